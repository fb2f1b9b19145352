//! The leader of a shared miss: the request that fetches a response while it is stored and read
//! along by others ([`crate::cache::inflight`]). Its own client is served from the entry being
//! written, like a follower, so the origin is read at the origin's pace whatever that client does.
//!
//! ```text
//!  each piece: origin ─read─> buffer ─write─> entry file (advance: the followers wake)
//!              entry file ─ sendfile, without waiting ─> own client, as far as its socket takes
//!  body done:  commit, then the rest of the file to the own client, waiting as a follower waits
//!  store fails: what the file holds to the client, then straight from the origin (forward::copy)
//! ```
//!
//! Why: relaying straight from the origin to the client, a client that reads slowly (or stops
//! reading) paced the origin read, and with it every follower, for up to `--client-timeout`. Here a
//! client only ever gets writes that do not wait while the origin is read; what it has not taken yet
//! waits in the entry's file, which is written anyway. That keeps memory at one copy buffer however
//! large the body and however far the client falls behind: the file is the buffer. (A bounded
//! buffer in memory would have had to stop the origin read once full, which is what held the
//! followers; one sized for the whole body is not bounded.) The store's size limit bounds the file.
//!
//! A file that cannot be read back, or holds less than was written to it, is the store's fault
//! (`CopyError::Store`, logged as an internal error), never the client's hang-up.
//!
//! A client that leaves is noticed at its next write; the fetch then goes on only while it is worth
//! finishing for the others ([`CacheWriter::worth_finishing`]), as in `forward::copy`.
//!
//! "Without waiting" is a non-blocking sendfile on plain TCP; through TLS it is what rustls takes
//! into its bounded record buffer and what of that the socket takes ([`TlsStream::write_now`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::forward::{self, CopyError};
use crate::cache::CacheWriter;
use crate::cache::inflight::Inflight;
use crate::http::body::{BodyReader, ChunkedWriter};
use crate::net::Stream;
use crate::net::sendfile;
use crate::net::stream::{self, RangeError};
use crate::tls::TlsStream;

/// Through TLS, file bytes pass through user space in pieces of this size.
const TLS_PIECE: usize = 64 * 1024;

/// Relays a body from `reader` to `client` through `store`, whose entry is shared as `inflight`
/// (see the module doc). Returns the body bytes the client received.
pub(in crate::proxy) fn relay<S: Read>(
    reader: &mut BodyReader<'_, S>,
    client: &mut Stream,
    inflight: Arc<Inflight>,
    store: CacheWriter,
    chunked: bool,
) -> Result<u64, CopyError> {
    // No file yet: the store's first write to the disk creates it (before it announces a byte).
    let mut out = FromFile::new(inflight.file(), inflight.body_offset(), chunked);
    let mut store = Some(store);
    let mut buf = vec![0u8; forward::COPY_BUF];
    // Body bytes in the file, flushed and announced to the readers.
    let mut stored = 0u64;
    // The client's write error, once it has left.
    let mut gone: Option<io::Error> = None;
    while !reader.is_done() {
        if gone.is_some() && !store.as_ref().is_some_and(CacheWriter::worth_finishing) {
            log::debug!("client gone and nobody reading along: fetch abandoned");
            break;
        }
        let n = forward::read_piece(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        // The last piece is written and committed in one disk job, before the rest goes out, so
        // a client asking again at once finds the entry.
        let stored_ok = match store.take() {
            Some(writer) if reader.is_done() => writer
                .finish(&buf[..n])
                .map_err(|e| log::debug!("response not stored: {e}")),
            Some(mut writer) => {
                let written = writer.write_all(&buf[..n]).map_err(drop);
                store = Some(writer);
                written
            }
            None => Ok(()),
        };
        if stored_ok.is_err() {
            drop(store.take());
            if let Some(e) = gone {
                return Err(CopyError::Write(e));
            }
            return straight_on(reader, client, out, stored, &buf[..n]);
        }
        stored += n as u64;
        out.file = out.file.or(inflight.file());
        if gone.is_none() {
            match out.send(client, stored, Pace::Now) {
                Ok(()) => {}
                Err(CopyError::Write(e)) => gone = Some(e),
                Err(e) => return Err(e),
            }
        }
    }
    if reader.is_done() {
        forward::commit(store.take());
    }
    if let Some(e) = gone {
        return Err(CopyError::Write(e));
    }
    out.file = out.file.or(inflight.file());
    out.send(client, stored, Pace::Wait)?;
    if !reader.is_done() {
        // The body reader says so itself with an error; should it not, the client is still cut
        // off where the file ends, as the followers are, never given a short body as whole.
        let short = io::Error::from(io::ErrorKind::UnexpectedEof);
        return Err(CopyError::Read(short));
    }
    if chunked {
        out.framing.extend_from_slice(b"0\r\n\r\n");
        out.send(client, stored, Pace::Wait)?;
    }
    Ok(out.sent)
}

/// The store failed: the client gets what the file holds, then the rest straight from the origin,
/// starting with `pending` (read, not stored).
fn straight_on<S: Read>(
    reader: &mut BodyReader<'_, S>,
    client: &mut Stream,
    mut out: FromFile<'_>,
    stored: u64,
    pending: &[u8],
) -> Result<u64, CopyError> {
    out.send(client, stored, Pace::Wait)?;
    let before = out.sent + pending.len() as u64;
    let rest = if out.chunked {
        let mut writer = ChunkedWriter::new(&mut *client);
        writer.write_all(pending).map_err(CopyError::Write)?;
        forward::copy(reader, &mut writer, None)
            .and_then(|n| writer.finish().map(|_| n).map_err(CopyError::Write))
    } else {
        client.write_all(pending).map_err(CopyError::Write)?;
        forward::copy(reader, client, None)
    }?;
    Ok(before + rest)
}

/// How a send to the leader's own client goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Only what the socket (and rustls) takes now; the rest waits in the file. While the origin
    /// is read, so a slow client never holds it.
    Now,
    /// All of it, each write within the socket's write timeout, as a follower is sent. Once the
    /// body is read, or the store failed.
    Wait,
}

/// The client's side: the body bytes it has been sent from the file, and the framing (chunk
/// heads and ends) still to go before the next file bytes.
struct FromFile<'a> {
    /// `None` until the store's first write created it.
    file: Option<&'a File>,
    body_offset: u64,
    chunked: bool,
    /// Body bytes sent.
    sent: u64,
    /// Where the current chunk's (or, unchunked, the current piece's) file bytes end.
    piece_end: u64,
    framing: Vec<u8>,
    /// File bytes on their way into TLS.
    scratch: Vec<u8>,
}

impl<'a> FromFile<'a> {
    fn new(file: Option<&'a File>, body_offset: u64, chunked: bool) -> Self {
        FromFile {
            file,
            body_offset,
            chunked,
            sent: 0,
            piece_end: 0,
            framing: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The entry's file: there once the store wrote a byte of the body, which is all that is sent.
    fn file(&self) -> Result<&'a File, CopyError> {
        self.file
            .ok_or_else(|| CopyError::Store(io::Error::other("no file for the bytes announced")))
    }

    /// Sends the body up to `available` bytes: all of it with [`Pace::Wait`], else only what the
    /// socket takes without waiting. A file that cannot be read, or holds less than the writer said
    /// it wrote, is [`CopyError::Store`]: the disk's fault, not the client's.
    fn send(&mut self, client: &mut Stream, available: u64, pace: Pace) -> Result<(), CopyError> {
        // A plain socket says WouldBlock when full; TLS has its own way (write_now).
        let plain = matches!(client, Stream::Plain(_));
        if plain && pace == Pace::Now {
            client.set_nonblocking(true).map_err(CopyError::Write)?;
        }
        if pace == Pace::Wait {
            // Through TLS, records left from writes that did not wait go first: rustls takes no
            // more plaintext while its buffer is full, and a write it takes none of is an error.
            client.flush().map_err(CopyError::Write)?;
        }
        let result = self.pump(client, available, pace);
        if plain && pace == Pace::Now {
            client.set_nonblocking(false).map_err(CopyError::Write)?;
        }
        match result {
            Err(CopyError::Write(e))
                if e.kind() == io::ErrorKind::WouldBlock && pace == Pace::Now =>
            {
                Ok(())
            }
            // Through TLS, records rustls still holds go out now.
            Ok(()) if pace == Pace::Wait => client.flush().map_err(CopyError::Write),
            other => other,
        }
    }

    fn pump(&mut self, client: &mut Stream, available: u64, pace: Pace) -> Result<(), CopyError> {
        loop {
            while !self.framing.is_empty() {
                let written = match client {
                    Stream::Tls(tls) if pace == Pace::Now => tls.write_now(&self.framing),
                    _ => client.write(&self.framing),
                };
                match written.map_err(CopyError::Write)? {
                    0 => return Err(CopyError::Write(io::ErrorKind::WriteZero.into())),
                    n => drop(self.framing.drain(..n)),
                }
            }
            if self.sent < self.piece_end {
                let (offset, len) = (self.body_offset + self.sent, self.piece_end - self.sent);
                let n = match client {
                    Stream::Plain(socket) if pace == Pace::Wait => {
                        sendfile::send_file(socket, self.file()?, offset, len).map_err(blame)?
                    }
                    Stream::Plain(socket) => {
                        sendfile::send_file_now(socket, self.file()?, offset, len).map_err(blame)?
                    }
                    Stream::Tls(tls) => self.tls_range(tls, offset, len, pace)?,
                };
                self.sent += n;
                if n < len {
                    if pace == Pace::Wait {
                        // The file holds fewer bytes than the writer said it wrote.
                        return Err(CopyError::Store(io::ErrorKind::UnexpectedEof.into()));
                    }
                    return Err(CopyError::Write(io::ErrorKind::WouldBlock.into()));
                }
                if self.chunked {
                    self.framing.extend_from_slice(b"\r\n");
                }
                continue;
            }
            if available <= self.piece_end {
                return Ok(());
            }
            if self.chunked {
                let size = available - self.piece_end;
                self.framing
                    .extend_from_slice(format!("{size:x}\r\n").as_bytes());
            }
            self.piece_end = available;
        }
    }

    /// Puts file bytes into TLS: all of them with [`Pace::Wait`], else until rustls or the socket takes no
    /// more without waiting.
    fn tls_range(
        &mut self,
        tls: &mut TlsStream,
        offset: u64,
        len: u64,
        pace: Pace,
    ) -> Result<u64, CopyError> {
        self.scratch.resize(TLS_PIECE, 0);
        let put = |bytes: &[u8]| {
            if pace == Pace::Wait {
                return tls.write_all(bytes).map(|()| bytes.len());
            }
            match tls.write_now(bytes) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                other => other,
            }
        };
        let file = self.file()?;
        stream::pour(file, offset, len, &mut self.scratch, put).map_err(|e| match e {
            RangeError::File(e) => CopyError::Store(e),
            RangeError::Out(e) => CopyError::Write(e),
        })
    }
}

/// A sendfile(2) error: EIO is the file's (the disk failed under it), anything else the socket's.
fn blame(error: io::Error) -> CopyError {
    if error.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) {
        CopyError::Store(error)
    } else {
        CopyError::Write(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Socket;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A client socket on 127.0.0.1, and its peer (held so the writes succeed).
    fn client() -> (Stream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = Socket::connect(&addr, Duration::from_secs(5)).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (Stream::Plain(socket), peer)
    }

    #[test]
    fn regression_a_file_shorter_than_stored_is_the_stores_fault_not_the_clients() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[b'x'; 10]).unwrap();
        let (mut stream, _peer) = client();
        let mut out = FromFile::new(Some(&file), 0, false);
        // The writer announced 100 bytes; the file holds 10.
        match out.send(&mut stream, 100, Pace::Wait) {
            Err(CopyError::Store(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            Err(CopyError::Write(e)) => panic!("blamed on the client: {e}"),
            other => panic!("expected a store error, got {:?}", other.map_err(|_| ())),
        }
        assert_eq!(out.sent, 10, "what the file holds went out");
    }

    #[test]
    fn a_file_that_cannot_be_read_is_the_stores_fault_not_the_clients() {
        // Write-only: every read_at fails (EBADF), as a failing disk would.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        std::fs::write(&path, [b'x'; 10]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut scratch = vec![0u8; 16];
        let mut sink = Vec::new();
        let result = stream::pour(&file, 0, 10, &mut scratch, |b| {
            sink.extend_from_slice(b);
            Ok(b.len())
        });
        assert!(sink.is_empty());
        assert!(matches!(result, Err(RangeError::File(_))), "{result:?}");
    }
}
