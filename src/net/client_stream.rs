//! The client's socket with a write deadline that means what `--client-timeout` says: a client that
//! makes no progress reading for that long is cut off, once, not after a multiple of it.
//!
//! The socket's `SO_SNDTIMEO` bounds each `write(2)`, not the stall. A blocking write that times out
//! after queueing part of its buffer returns that part as success; `write_all` then starts a second
//! write with a fresh timeout, and a client that stopped reading held the worker for two or three
//! timeouts (92-94 s with the 30 s default). A blocking write only comes back short when its timeout
//! ran out (or a signal came), so a short write is the stall: if the socket is still not writable,
//! the next write fails at once with `TimedOut`.
//!
//! `sendfile(2)` is worse (one call spans several timeouts); [`crate::net::sendfile::send_file`]
//! times its own waits. Through TLS (an intercepted tunnel) the short-write rule is not applied:
//! rustls writes its own records, so a short count there does not mean a timeout.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};

use super::sendfile::SendFile;
use super::stream::Stream;

/// A client's [`Stream`] (in blocking mode when written to) that remembers a short write.
pub struct ClientStream {
    inner: Stream,
    /// The last write came back short: its whole timeout passed without the client reading enough.
    short_write: bool,
}

impl ClientStream {
    pub fn new(inner: Stream) -> ClientStream {
        ClientStream {
            inner,
            short_write: false,
        }
    }

    /// The stream, for a handler that moves it elsewhere (a tunnel, TLS).
    pub fn into_inner(self) -> Stream {
        self.inner
    }

    /// After a short write: fails if the client still has not made room.
    fn check_progress(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.short_write) && !is_writable(self.inner.tcp()) {
            return Err(stalled());
        }
        Ok(())
    }

    /// Notes a write that took fewer bytes than asked: on plain TCP in blocking mode, that only
    /// happens when the write timeout ran out.
    fn note(&mut self, asked: usize, written: usize) {
        self.short_write = written < asked && !self.inner.is_tls();
    }
}

/// The error of a client that stopped reading.
pub fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client read nothing for the whole write timeout",
    )
}

/// Whether the socket can take more bytes right now (or has failed, which the next write reports).
fn is_writable(socket: &TcpStream) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) => false,
        Ok(_) => true,
        // Let the write itself report what is wrong.
        Err(_) => true,
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_progress()?;
        let n = self.inner.write(buf)?;
        self.note(buf.len(), n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check_progress()?;
        let n = self.inner.write_vectored(bufs)?;
        self.note(bufs.iter().map(|b| b.len()).sum(), n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl SendFile for ClientStream {
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        self.check_progress()?;
        self.inner.send_file(file, offset, len)
    }
}

impl Deref for ClientStream {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        &self.inner
    }
}

impl DerefMut for ClientStream {
    fn deref_mut(&mut self) -> &mut Stream {
        &mut self.inner
    }
}

impl AsRawFd for ClientStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_stalled_reader_fails_the_write_after_one_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _reader = TcpStream::connect(addr).unwrap(); // never reads
        let (socket, _) = listener.accept().unwrap();
        let timeout = Duration::from_secs(1);
        socket.set_write_timeout(Some(timeout)).unwrap();
        let mut stream = ClientStream::new(Stream::Plain(socket));
        let chunk = vec![0u8; 64 * 1024];
        let started = Instant::now();
        // Each call's time: the failing one is the stall (the calls before it only fill buffers).
        let (error, last_call) = loop {
            let call = Instant::now();
            if let Err(e) = stream.write_all(&chunk) {
                break (e, call.elapsed());
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never stalled");
        };
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{error}"
        );
        // One timeout, not a partial write and then a second full one.
        assert!(
            last_call < timeout * 8 / 5,
            "the stalled write took {last_call:?}"
        );
    }
}
