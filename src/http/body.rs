//! Message body framing (RFC 9112 §6): deciding how a body ends, decoding it, and encoding chunked output.
//!
//! ```text
//!   head ──> BodyMode::{NoBody, Length(n), Chunked, CloseDelimited}
//!              │
//!              └─> BodyReader: yields the decoded payload, errors on truncation or bad chunks
//!   payload ──> ChunkedWriter (when the length is unknown and the peer speaks HTTP/1.1)
//! ```

use std::io::{self, Read, Write};

use super::chunked::{check_trailer_field, parse_chunk_size};
use super::{Error, Headers, Method, ReadBuf};

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    NoBody,
    Length(u64),
    Chunked,
    /// The body runs until the sender closes the connection (responses only).
    CloseDelimited,
}

impl BodyMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            BodyMode::NoBody => "none",
            BodyMode::Length(_) => "length",
            BodyMode::Chunked => "chunked",
            BodyMode::CloseDelimited => "close-delimited",
        }
    }
}

/// Framing of a request body. Strict, because a proxy that reads framing differently from the origin
/// invites request smuggling: both Transfer-Encoding and Content-Length, or any coding but a lone
/// `chunked`, is refused.
pub fn request_mode(headers: &Headers) -> Result<BodyMode, Error> {
    match transfer_coding(headers)? {
        Some(mode) => Ok(mode),
        None => Ok(match content_length(headers)? {
            Some(0) | None => BodyMode::NoBody,
            Some(n) => BodyMode::Length(n),
        }),
    }
}

/// Framing of a response body, given the request method and the status (RFC 9112 §6.3).
pub fn response_mode(
    request_method: &Method,
    status: u16,
    headers: &Headers,
) -> Result<BodyMode, Error> {
    if *request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(BodyMode::NoBody);
    }
    match transfer_coding(headers)? {
        Some(mode) => Ok(mode),
        None => Ok(match content_length(headers)? {
            Some(0) => BodyMode::NoBody,
            Some(n) => BodyMode::Length(n),
            None => BodyMode::CloseDelimited,
        }),
    }
}

/// The framing Transfer-Encoding gives (RFC 9112 §6.1, §6.3): only a lone `chunked` is decoded. A
/// list whose final coding is not `chunked`, or that repeats it, leaves the body length unknowable
/// (400); `chunked` after a coding we do not decode (`gzip, chunked`) is a 501.
fn transfer_coding(headers: &Headers) -> Result<Option<BodyMode>, Error> {
    if !headers.contains("transfer-encoding") {
        return Ok(None);
    }
    if headers.contains("content-length") {
        return Err(Error::ContentLengthWithTransferEncoding);
    }
    let mut codings = Vec::new();
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        // Every value counts: one that is not text must not vanish from the list.
        let text = std::str::from_utf8(value).map_err(|_| Error::ChunkedNotFinal)?;
        codings.extend(text.split(',').map(str::trim).filter(|c| !c.is_empty()));
    }
    let is_chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
    match codings.split_last() {
        Some((last, rest)) if is_chunked(last) && !rest.iter().any(is_chunked) => {
            if rest.is_empty() {
                Ok(Some(BodyMode::Chunked))
            } else {
                Err(Error::UnsupportedTransferEncoding)
            }
        }
        _ => Err(Error::ChunkedNotFinal),
    }
}

/// The Content-Length, requiring every value (repeated or comma-joined) to be the same plain number.
fn content_length(headers: &Headers) -> Result<Option<u64>, Error> {
    let mut found = None;
    for field in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        let text = std::str::from_utf8(field.1).map_err(|_| Error::InvalidContentLength)?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::InvalidContentLength);
            }
            let n: u64 = part.parse().map_err(|_| Error::InvalidContentLength)?;
            match found {
                Some(prev) if prev != n => return Err(Error::DuplicateContentLength),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// The longest chunk-size line we accept, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// The most trailer bytes we read (and discard) after the last chunk.
const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields up to an empty line; counts bytes seen.
    Trailers(usize),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Reads a body's payload from a buffer and the stream behind it, enforcing its framing. Bytes after the
/// body stay in the buffer for the next message. Truncation is an error (`Error::Truncated`), so a cut-off
/// response is never mistaken for a complete one.
pub struct BodyReader<'a, S> {
    buf: &'a mut ReadBuf,
    stream: &'a mut S,
    state: State,
}

impl<'a, S: Read> BodyReader<'a, S> {
    pub fn new(mode: BodyMode, buf: &'a mut ReadBuf, stream: &'a mut S) -> Self {
        let state = match mode {
            BodyMode::NoBody | BodyMode::Length(0) => State::Done,
            BodyMode::Length(n) => State::Length(n),
            BodyMode::Chunked => State::Chunked(Chunk::Size),
            BodyMode::CloseDelimited => State::UntilClose,
        };
        BodyReader { buf, stream, state }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads like [`Read::read`] (waiting on the stream when nothing is buffered), then goes on
    /// across chunk boundaries with what is already buffered, stopping where the stream would have to
    /// be read again. An origin's many small chunks come out as one batch, for one write to the peer,
    /// and nothing that has arrived is held back waiting for more.
    pub fn read_batch(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = self.read(out)?;
        if n == 0 {
            return Ok(0);
        }
        while n < out.len() {
            match self.read_buffered(&mut out[n..])? {
                0 => break,
                more => n += more,
            }
        }
        Ok(n)
    }

    /// Like `read`, from the buffer alone: 0 where going on would read the stream (or at the end).
    fn read_buffered(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Length(_) | State::UntilClose | State::Chunked(Chunk::Data(_)) => {
                    // A non-empty buffer always yields at least one byte here.
                    return if self.buf.is_empty() {
                        Ok(0)
                    } else {
                        self.read(out)
                    };
                }
                State::Chunked(Chunk::Done) => self.state = State::Done,
                State::Chunked(chunk) => {
                    if !self.line_is_buffered(chunk) {
                        return Ok(0);
                    }
                    self.state = State::Chunked(self.next_chunk_state(chunk)?);
                }
            }
        }
    }

    /// Whether [`Self::next_chunk_state`] can decide `chunk` from the buffer alone: the line it needs
    /// is there, or what is there is already too long for one.
    fn line_is_buffered(&self, chunk: Chunk) -> bool {
        let max = match chunk {
            Chunk::Size => MAX_CHUNK_LINE,
            Chunk::DataEnd => 2,
            Chunk::Trailers(seen) => MAX_TRAILERS - seen.min(MAX_TRAILERS),
            Chunk::Data(_) | Chunk::Done => return true,
        };
        let data = self.buf.data();
        data[..data.len().min(max)].contains(&b'\n') || data.len() >= max || self.buf.is_full()
    }

    /// Reads from the buffer, or straight from the stream into `out` when the buffer is empty.
    fn read_raw(&mut self, out: &mut [u8], limit: u64) -> io::Result<usize> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).min(out.len());
        if !self.buf.is_empty() {
            return Ok(self.buf.take_into(out, limit));
        }
        self.stream.read(&mut out[..limit])
    }

    /// Makes sure the buffer holds a whole line (ending in LF) of at most `max` bytes; returns its
    /// length including the LF. Only the first `max` buffered bytes count, so the answer does not
    /// depend on how the peer's bytes were split into reads.
    fn buffered_line(&mut self, max: usize, too_long: Error) -> io::Result<usize> {
        loop {
            let data = self.buf.data();
            let window = &data[..data.len().min(max)];
            if let Some(pos) = window.iter().position(|&b| b == b'\n') {
                return Ok(pos + 1);
            }
            if data.len() >= max || self.buf.is_full() {
                return Err(too_long.into());
            }
            if self.buf.fill_from(self.stream)? == 0 {
                return Err(Error::Truncated.into());
            }
        }
    }

    /// Advances the chunked state machine until data can be read or the body ends.
    fn next_chunk_state(&mut self, chunk: Chunk) -> io::Result<Chunk> {
        match chunk {
            Chunk::Size => {
                let len =
                    self.buffered_line(MAX_CHUNK_LINE, Error::InvalidChunk("chunk line too long"))?;
                let size = parse_chunk_size(&self.buf.data()[..len])?;
                self.buf.consume(len);
                Ok(if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                })
            }
            Chunk::DataEnd => {
                let len =
                    self.buffered_line(2, Error::InvalidChunk("missing crlf after chunk data"))?;
                if &self.buf.data()[..len] != b"\r\n" {
                    return Err(Error::InvalidChunk("missing crlf after chunk data").into());
                }
                self.buf.consume(len);
                Ok(Chunk::Size)
            }
            Chunk::Trailers(seen) => {
                let len = self.buffered_line(
                    MAX_TRAILERS - seen.min(MAX_TRAILERS),
                    Error::InvalidChunk("trailer section too large"),
                )?;
                let line = &self.buf.data()[..len];
                let last = line == b"\r\n";
                if !last {
                    check_trailer_field(line)?;
                }
                self.buf.consume(len);
                Ok(if last {
                    Chunk::Done
                } else {
                    Chunk::Trailers(seen + len)
                })
            }
            other => Ok(other),
        }
    }
}

impl<S: Read> Read for BodyReader<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Length(left) => {
                    let n = self.read_raw(out, left)?;
                    if n == 0 {
                        return Err(Error::Truncated.into());
                    }
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(n);
                }
                State::UntilClose => {
                    let n = self.read_raw(out, u64::MAX)?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
                State::Chunked(Chunk::Data(left)) => {
                    let n = self.read_raw(out, left)?;
                    if n == 0 {
                        return Err(Error::Truncated.into());
                    }
                    let left = left - n as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(n);
                }
                State::Chunked(Chunk::Done) => self.state = State::Done,
                State::Chunked(chunk) => self.state = State::Chunked(self.next_chunk_state(chunk)?),
            }
        }
    }
}

/// Writes a payload with chunked framing, each `write` one chunk in one vectored write (size line,
/// data and CRLF together: three writes a chunk made 60,003 `sendto` for 20,000 one-byte chunks).
/// Writing fewer, larger chunks is the caller's part ([`BodyReader::read_batch`]). `finish` writes
/// the last chunk; dropping without it leaves the message unterminated, which tells the receiver
/// the body was cut off.
pub struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> ChunkedWriter<W> {
    pub fn new(inner: W) -> Self {
        ChunkedWriter { inner }
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(b"0\r\n\r\n")?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let mut size_line = [0u8; 18];
        let size_len = {
            let mut cursor = io::Cursor::new(&mut size_line[..]);
            write!(cursor, "{:x}\r\n", data.len())?;
            cursor.position() as usize
        };
        let mut parts = [
            io::IoSlice::new(&size_line[..size_len]),
            io::IoSlice::new(data),
            io::IoSlice::new(b"\r\n"),
        ];
        write_all_vectored(&mut self.inner, &mut parts)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes every byte of `parts`, in as few vectored writes as the writer takes (std's own
/// `write_all_vectored` is not stable).
fn write_all_vectored(out: &mut impl Write, mut parts: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        match out.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    fn decode(mode: BodyMode, input: &[u8]) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let mut buf = ReadBuf::with_capacity(64 * 1024);
        let mut stream = input;
        let mut out = Vec::new();
        let result = BodyReader::new(mode, &mut buf, &mut stream)
            .read_to_end(&mut out)
            .map(|_| out);
        // Whatever the reader left: in the buffer, then in the stream.
        let mut rest = buf.data().to_vec();
        rest.extend_from_slice(stream);
        (result, rest)
    }

    #[test]
    fn request_framing_is_strict() {
        assert_eq!(request_mode(&headers(&[])), Ok(BodyMode::NoBody));
        assert_eq!(
            request_mode(&headers(&[("Content-Length", "5")])),
            Ok(BodyMode::Length(5))
        );
        assert_eq!(
            request_mode(&headers(&[("Content-Length", "5, 5")])),
            Ok(BodyMode::Length(5))
        );
        assert_eq!(
            request_mode(&headers(&[
                ("Content-Length", "5"),
                ("Content-Length", "6")
            ])),
            Err(Error::DuplicateContentLength)
        );
        assert_eq!(
            request_mode(&headers(&[("Content-Length", "+5")])),
            Err(Error::InvalidContentLength)
        );
        assert_eq!(
            request_mode(&headers(&[
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "5")
            ])),
            Err(Error::ContentLengthWithTransferEncoding)
        );
        assert_eq!(
            request_mode(&headers(&[("Transfer-Encoding", "gzip, chunked")])),
            Err(Error::UnsupportedTransferEncoding)
        );
        assert_eq!(
            request_mode(&headers(&[("Transfer-Encoding", "Chunked")])),
            Ok(BodyMode::Chunked)
        );
    }

    #[test]
    fn transfer_encoding_must_end_in_a_single_chunked() {
        let te = |values: &[&str]| {
            let h: Headers = values.iter().map(|v| ("Transfer-Encoding", *v)).collect();
            request_mode(&h)
        };
        assert_eq!(te(&["chunked"]), Ok(BodyMode::Chunked));
        assert_eq!(te(&["", " chunked "]), Ok(BodyMode::Chunked));
        assert_eq!(
            te(&["gzip", "chunked"]),
            Err(Error::UnsupportedTransferEncoding)
        );
        for bad in [
            &["chunked, gzip"][..],
            &["gzip"],
            &["identity"],
            &[""],
            &["chunked", "chunked"],
            &["chunked, chunked"],
            &["chunked;q=1"],
            &["chunked", "gzip"],
        ] {
            assert_eq!(te(bad), Err(Error::ChunkedNotFinal), "{bad:?}");
            assert_eq!(Error::ChunkedNotFinal.client_status(), 400);
        }
        // A value that is not text must not vanish from the list and leave `chunked` last.
        let mut h: Headers = [("Transfer-Encoding", "chunked")].into_iter().collect();
        h.append("Transfer-Encoding", b"g\xffzip");
        assert_eq!(request_mode(&h), Err(Error::ChunkedNotFinal));
        assert_eq!(
            response_mode(&Method::Get, 200, &h),
            Err(Error::ChunkedNotFinal)
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112_section_6_3() {
        let none = headers(&[]);
        assert_eq!(
            response_mode(&Method::Head, 200, &headers(&[("Content-Length", "9")])),
            Ok(BodyMode::NoBody)
        );
        assert_eq!(
            response_mode(&Method::Get, 204, &none),
            Ok(BodyMode::NoBody)
        );
        assert_eq!(
            response_mode(&Method::Get, 304, &none),
            Ok(BodyMode::NoBody)
        );
        assert_eq!(
            response_mode(&Method::Get, 200, &none),
            Ok(BodyMode::CloseDelimited)
        );
    }

    #[test]
    fn decodes_chunked_and_leaves_the_next_message() {
        let raw = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next";
        let (body, rest) = decode(BodyMode::Chunked, raw);
        assert_eq!(body.unwrap(), b"hello world");
        assert_eq!(rest, b"GET /next");
    }

    #[test]
    fn length_body_stops_at_its_length_and_detects_truncation() {
        let (body, rest) = decode(BodyMode::Length(3), b"abcdef");
        assert_eq!((body.unwrap(), rest), (b"abc".to_vec(), b"def".to_vec()));
        let (body, _) = decode(BodyMode::Length(10), b"abc");
        assert_eq!(body.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let (body, _) = decode(BodyMode::CloseDelimited, b"all of it");
        assert_eq!(body.unwrap(), b"all of it");
    }

    #[test]
    fn rejects_malformed_chunks() {
        for raw in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"5\r\nhel",
            b"0\r\nTrailer: x\n\r\n",
        ] {
            let (body, _) = decode(BodyMode::Chunked, raw);
            assert!(body.is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// Reads a chunked body one byte per read, so every state sees partial lines.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn decode_one_byte_reads(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut buf = ReadBuf::with_capacity(64 * 1024);
        let mut stream = OneByte(input);
        let mut out = Vec::new();
        BodyReader::new(BodyMode::Chunked, &mut buf, &mut stream)
            .read_to_end(&mut out)
            .map(|_| out)
    }

    /// Found by the `chunked` fuzzer (with `-max_len` above the line limit): a chunk-size line longer
    /// than the limit passed when it arrived in one read and failed when it came byte by byte.
    #[test]
    fn regression_chunk_line_limit_does_not_depend_on_read_sizes() {
        let raw = format!("5;x={}\r\nhello\r\n0\r\n\r\n", "v".repeat(MAX_CHUNK_LINE));
        let (bulk, _) = decode(BodyMode::Chunked, raw.as_bytes());
        let bytewise = decode_one_byte_reads(raw.as_bytes());
        assert!(bulk.is_err() && bytewise.is_err(), "{bulk:?} {bytewise:?}");
        let trailers = format!("0\r\nX: {}\r\n\r\n", "v".repeat(MAX_TRAILERS));
        let (bulk, _) = decode(BodyMode::Chunked, trailers.as_bytes());
        assert!(bulk.is_err());
    }

    #[test]
    fn trailer_fields_must_be_well_formed() {
        let (body, rest) = decode(BodyMode::Chunked, b"0\r\nX-T: 1\r\nY:\t2 \r\n\r\nnext");
        assert_eq!((body.unwrap(), rest), (Vec::new(), b"next".to_vec()));
        for bad in [
            &b"0\r\nX\r\n\r\n"[..],
            b"0\r\n: x\r\n\r\n",
            b"0\r\nX : 1\r\n\r\n",
            b"0\r\nX: 1\r\n folded\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n\n",
        ] {
            let (body, _) = decode(BodyMode::Chunked, bad);
            assert!(body.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A writer that counts the calls a socket would see as syscalls.
    #[derive(Default)]
    struct CountingWriter {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl Write for CountingWriter {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            self.bytes.extend_from_slice(data);
            Ok(data.len())
        }

        fn write_vectored(&mut self, parts: &[io::IoSlice<'_>]) -> io::Result<usize> {
            self.writes += 1;
            let mut n = 0;
            for part in parts {
                self.bytes.extend_from_slice(part);
                n += part.len();
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A source that hands out at most `piece` bytes a read, as a socket does.
    struct Pieces<'a> {
        data: &'a [u8],
        piece: usize,
        reads: usize,
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = self.data.len().min(out.len()).min(self.piece);
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn regression_one_byte_chunks_are_rechunked_in_few_writes_not_three_per_chunk() {
        let mut encoded = Vec::new();
        let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for byte in &body {
            encoded.extend_from_slice(format!("1\r\n{}\r\n", *byte as char).as_bytes());
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        let mut buf = ReadBuf::with_capacity(64 * 1024);
        let mut source = Pieces {
            data: &encoded,
            piece: 16 * 1024,
            reads: 0,
        };
        let mut reader = BodyReader::new(BodyMode::Chunked, &mut buf, &mut source);
        let mut out = ChunkedWriter::new(CountingWriter::default());
        let mut batch = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read_batch(&mut batch).unwrap();
            if n == 0 {
                break;
            }
            out.write_all(&batch[..n]).unwrap();
        }
        assert!(reader.is_done());
        let counted = out.finish().unwrap();
        let reads = source.reads;
        // At most one write per read of the source (what had arrived goes out at once) and the last
        // chunk: 120 KB of framing in 16 KiB reads, against 60,003 writes before.
        assert!(
            counted.writes <= reads + 1 && counted.writes < 100,
            "{} writes for {reads} reads",
            counted.writes
        );
        assert_eq!(decode_one_byte_reads(&counted.bytes).unwrap(), body);
    }

    #[test]
    fn a_chunk_is_one_write_however_large() {
        let mut out = ChunkedWriter::new(CountingWriter::default());
        out.write_all(b"x").unwrap();
        out.write_all(&[b'y'; 100_000]).unwrap();
        let counted = out.finish().unwrap();
        assert_eq!(counted.writes, 3, "two chunks and the last one");
        assert!(counted.bytes.starts_with(b"1\r\nx\r\n186a0\r\nyy"));
    }

    #[test]
    fn a_batch_stops_where_the_stream_would_be_read_again() {
        // The second chunk's size line is cut: the first chunk's data goes out without waiting.
        let mut buf = ReadBuf::with_capacity(1024);
        let mut stream: &[u8] = b"3\r\nabc\r\n2\r\nde\r\n1";
        let mut reader = BodyReader::new(BodyMode::Chunked, &mut buf, &mut stream);
        let mut out = [0u8; 64];
        assert_eq!(reader.read_batch(&mut out).unwrap(), 5);
        assert_eq!(&out[..5], b"abcde");
        assert!(!reader.is_done());
    }

    #[test]
    fn chunked_round_trip_over_every_split() {
        let mut encoded = Vec::new();
        let mut writer = ChunkedWriter::new(&mut encoded);
        writer.write_all(b"first").unwrap();
        writer.write_all(b"second part").unwrap();
        writer.finish().unwrap();
        assert_eq!(
            decode_one_byte_reads(&encoded).unwrap(),
            b"firstsecond part"
        );
    }
}
