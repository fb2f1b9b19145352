//! A connection's byte stream: plain TCP, or TLS over TCP once the proxy has intercepted a CONNECT
//! (or for an https origin). Handlers read and write it without caring which; waits go through the
//! [`Socket`] underneath either way.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use super::sendfile::{self, SendFile};
use super::socket::Socket;
use crate::tls::TlsStream;

/// Plain TCP or TLS.
pub enum Stream {
    Plain(Socket),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The kernel socket underneath, for peeks, options and shutdown.
    pub fn tcp(&self) -> &TcpStream {
        self.socket().tcp()
    }

    /// The socket underneath, for timeouts and waits.
    pub fn socket(&self) -> &Socket {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.socket(),
        }
    }

    pub fn socket_mut(&mut self) -> &mut Socket {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.socket_mut(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The plain socket (non-blocking), for a thread that is no worker (a tunnel); `None` once TLS
    /// runs on it.
    pub fn into_tcp(self) -> Option<TcpStream> {
        Some(self.into_socket()?.into_std())
    }

    /// The plain socket, to run TLS on; `None` once TLS runs on it.
    pub fn into_socket(self) -> Option<Socket> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }

    pub fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_nonblocking(on),
            Stream::Tls(t) => t.set_nonblocking(on),
        }
    }

    /// Whether bytes were received that a read would return though the socket shows nothing: TLS
    /// plaintext already decrypted. A connection with such bytes must not wait on its socket.
    pub fn has_buffered_input(&mut self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.has_buffered_plaintext(),
        }
    }

    /// Whether a TLS handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => t.is_handshaking(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_vectored(bufs),
            Stream::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

impl SendFile for Stream {
    /// sendfile(2) on plain TCP; through TLS the file must pass through user space to be encrypted.
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        match self {
            Stream::Plain(s) => sendfile::send_file(s, file, offset, len),
            Stream::Tls(t) => copy_range(file, offset, len, t.as_mut()),
        }
    }
}

/// Copies `len` bytes of `file` from `offset` into `out`; returns the bytes copied (fewer at its end).
fn copy_range(file: &File, offset: u64, len: u64, out: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    pour(file, offset, len, &mut buf, |bytes| {
        out.write_all(bytes).map(|()| bytes.len())
    })
    .map_err(RangeError::into_io)
}

/// Which side of [`pour`] failed: reading the file (the disk's fault) or writing out.
#[derive(Debug)]
pub enum RangeError {
    File(io::Error),
    Out(io::Error),
}

impl RangeError {
    pub fn into_io(self) -> io::Error {
        match self {
            RangeError::File(e) | RangeError::Out(e) => e,
        }
    }
}

/// Reads `len` bytes of `file` from `offset` through `buf` and hands them to `put`, which returns
/// how many of the bytes it was given it took. Stops at the file's end, or when `put` takes fewer
/// than it was given (a writer that does not wait). Returns the bytes taken. This is the user-space
/// counterpart of sendfile(2), for TLS, where the bytes must be encrypted on their way.
pub fn pour(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    mut put: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Result<u64, RangeError> {
    use std::os::unix::fs::FileExt;
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let got = match file.read_at(&mut buf[..want], offset + done) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RangeError::File(e)),
        };
        let taken = put(&buf[..got]).map_err(RangeError::Out)?;
        done += taken as u64;
        if taken < got {
            break;
        }
    }
    Ok(done)
}
