//! The chunked decoder (`BodyReader` in `Chunked` mode) on arbitrary bytes, read twice: from a slice
//! in bulk, and one byte per read with small output buffers. Neither may panic, and both must agree:
//! the same payload or both an error, and the same bytes left over for the next message. A payload
//! decoded once must also survive `ChunkedWriter` and a second decode.

#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use porter::http::ReadBuf;
use porter::http::body::{BodyMode, BodyReader, ChunkedWriter};

/// The buffer the proxy gives a client connection (the head limit).
const BUF: usize = 64 * 1024;

struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), out.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// Decodes `data`; returns the payload (or `None` on error) and what was left unread.
fn decode(data: &[u8], one_byte: bool) -> (Option<Vec<u8>>, Vec<u8>) {
    let mut buf = ReadBuf::with_capacity(BUF);
    let mut out = Vec::new();
    if one_byte {
        let mut stream = OneByte(data);
        let mut reader = BodyReader::new(BodyMode::Chunked, &mut buf, &mut stream);
        let mut piece = [0u8; 7];
        let ok = loop {
            match reader.read(&mut piece) {
                Ok(0) => break reader.is_done(),
                Ok(n) => out.extend_from_slice(&piece[..n]),
                Err(_) => break false,
            }
        };
        let mut rest = buf.data().to_vec();
        rest.extend_from_slice(stream.0);
        (ok.then_some(out), rest)
    } else {
        let mut stream = data;
        let mut reader = BodyReader::new(BodyMode::Chunked, &mut buf, &mut stream);
        let ok = reader.read_to_end(&mut out).is_ok() && reader.is_done();
        let mut rest = buf.data().to_vec();
        rest.extend_from_slice(stream);
        (ok.then_some(out), rest)
    }
}

fuzz_target!(|data: &[u8]| {
    let (bulk, bulk_rest) = decode(data, false);
    let (bytewise, bytewise_rest) = decode(data, true);
    assert_eq!(bulk, bytewise, "bulk and one-byte reads disagree");
    let Some(payload) = bulk else { return };
    assert_eq!(bulk_rest, bytewise_rest, "different bytes left over");

    let mut encoded = Vec::new();
    let mut writer = ChunkedWriter::new(&mut encoded);
    for piece in payload.chunks(1 + data.len() % 97) {
        writer.write_all(piece).unwrap();
    }
    writer.finish().unwrap();
    let (again, rest) = decode(&encoded, false);
    assert_eq!(again.as_deref(), Some(&payload[..]));
    assert!(rest.is_empty());
});
