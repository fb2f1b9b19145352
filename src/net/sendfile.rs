//! File-to-socket copies with sendfile(2), so cached and served bodies never pass through user space.
//!
//! `std::io::copy` no longer does this for a File and a TcpStream: since Rust 1.8x it refuses
//! sendfile into sockets, because a file modified later could change bytes already queued in the
//! socket buffer. Porter's callers never modify a file in place (cache entries are replaced by
//! rename, served files are the operator's), so the kernel path is safe here and much cheaper.

use std::fs::File;
use std::io;

use super::socket::Socket;
use crate::runtime::reactor::{YIELD_EVERY, YieldBudget};

/// A writer that can take a slice of a file: sendfile(2) for sockets, a plain copy for in-memory
/// buffers (the seam tests use).
pub trait SendFile: io::Write {
    /// Writes `len` bytes of `file` from `offset`; returns the bytes written (fewer at end of file).
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64>;
}

impl SendFile for Socket {
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        send_file(self, file, offset, len)
    }
}

impl SendFile for Vec<u8> {
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.take(len).read_to_end(self).map(|n| n as u64)
    }
}

/// Sends `len` bytes of `file` starting at `offset` to a socket. Returns the bytes sent; fewer than
/// `len` means the file ended early. The socket's write timeout bounds the stall, not the call:
/// `TimedOut` once the client has taken nothing for that long.
///
/// A blocking sendfile could not do that (the kernel splits it into pipe-sized socket writes, each
/// with a fresh `SO_SNDTIMEO`), and it would hold the worker: the socket is non-blocking, and a full
/// socket is waited for through the poller like any other write.
pub fn send_file(socket: &mut Socket, file: &File, offset: u64, len: u64) -> io::Result<u64> {
    let mut position = offset;
    let end = offset + len;
    let mut budget = YieldBudget::default();
    while position < end {
        let chunk = (end - position).min(YIELD_EVERY) as usize;
        let before = position;
        match rustix::fs::sendfile(socket.tcp(), file, Some(&mut position), chunk) {
            Ok(0) => break,
            Ok(_) => budget.spend(position - before),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => socket.wait_writable()?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(position - offset)
}

/// Like [`send_file`], but never waits: sends what the socket takes now and returns at its first
/// `EAGAIN`, with the bytes sent (possibly none). For a writer with other work to do while a slow
/// reader catches up (`proxy::leader`).
pub fn send_file_now(socket: &Socket, file: &File, offset: u64, len: u64) -> io::Result<u64> {
    let mut position = offset;
    let end = offset + len;
    while position < end {
        let chunk = (end - position).min(YIELD_EVERY) as usize;
        match rustix::fs::sendfile(socket.tcp(), file, Some(&mut position), chunk) {
            Ok(0) | Err(rustix::io::Errno::AGAIN) => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(position - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn sends_a_range_of_a_file_to_a_socket() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        file.write_all(&data).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let mut socket = Socket::connect(&addr, Duration::from_secs(5)).unwrap();
        assert_eq!(
            send_file(&mut socket, &file, 1000, 250_000).unwrap(),
            250_000
        );
        assert_eq!(
            send_file(&mut socket, &file, 299_990, 100).unwrap(),
            10,
            "stops at the end of the file"
        );
        drop(socket);
        let got = reader.join().unwrap();
        assert_eq!(&got[..250_000], &data[1000..251_000]);
        assert_eq!(&got[250_000..], &data[299_990..]);
    }

    #[test]
    fn send_file_now_sends_what_a_stalled_reader_takes_and_returns_without_waiting() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 64 << 20]).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _reader = TcpStream::connect(listener.local_addr().unwrap()).unwrap(); // never reads
        let (socket, _) = listener.accept().unwrap();
        let socket = Socket::new(socket, crate::net::Side::Client).unwrap();
        let first = send_file_now(&socket, &file, 0, 64 << 20).unwrap();
        assert!(first > 0 && first < 64 << 20, "sent {first}");
        let second = send_file_now(&socket, &file, first, (64 << 20) - first).unwrap();
        assert!(second < 1 << 20, "the full socket took {second} more");
    }

    #[test]
    fn regression_sendfile_to_a_stalled_reader_fails_after_one_timeout() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 64 << 20]).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _reader = TcpStream::connect(listener.local_addr().unwrap()).unwrap(); // never reads
        let (socket, _) = listener.accept().unwrap();
        let mut socket = Socket::new(socket, crate::net::Side::Client).unwrap();
        let timeout = Duration::from_secs(1);
        socket.set_write_timeout(Some(timeout)).unwrap();
        let started = std::time::Instant::now();
        let error = send_file(&mut socket, &file, 0, 64 << 20).unwrap_err();
        let took = started.elapsed();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(took < timeout * 8 / 5, "a stalled sendfile took {took:?}");
    }
}
