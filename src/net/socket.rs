//! A TCP socket that never blocks its thread: the kernel socket is always non-blocking, and a read or
//! write that would block waits through the worker's poller instead ([`super::reactor::wait_fd`]), so
//! other connections run meanwhile.
//!
//! To the code above it, it behaves like `std::net::TcpStream`: in "blocking" mode a read waits for
//! bytes and a write for room, each within its timeout (`TimedOut` after it); in non-blocking mode
//! they return `WouldBlock`. Both modes and both timeouts are plain fields here, so switching costs
//! no system call. A timeout bounds the wait for progress, not the whole call: a write that is
//! taking bytes keeps going, a write to a client that takes nothing for the timeout fails.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use mio::Interest;

use crate::runtime::reactor::{self, Registration, State};

/// Whose socket this is, which names the states its waits are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Origin,
}

/// A non-blocking TCP socket with blocking-style reads and writes that yield instead of blocking.
pub struct Socket {
    /// Declared first so it is dropped first: off its worker, the socket leaves the poller before
    /// its descriptor closes.
    registration: Registration,
    tcp: TcpStream,
    side: Side,
    /// Whether the caller wants `WouldBlock` back rather than a wait.
    nonblocking: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// Blocking-style reads and writes yield every [`reactor::YIELD_EVERY`] bytes: a peer fast
    /// enough never to make the socket say `WouldBlock` (a quick reader of a long response, a fast
    /// origin) would otherwise keep the worker's other connections waiting. sendfile, which goes
    /// around `Write`, keeps its own count.
    moved: reactor::YieldBudget,
}

impl Socket {
    /// Takes an accepted or connected socket and makes it non-blocking.
    pub fn new(tcp: TcpStream, side: Side) -> io::Result<Socket> {
        tcp.set_nonblocking(true)?;
        Ok(Socket::from_nonblocking(tcp, side))
    }

    /// Takes a socket that is non-blocking already (accepted with `SOCK_NONBLOCK`).
    pub fn from_nonblocking(tcp: TcpStream, side: Side) -> Socket {
        Socket {
            tcp,
            registration: Registration::default(),
            side,
            nonblocking: false,
            read_timeout: None,
            write_timeout: None,
            moved: reactor::YieldBudget::default(),
        }
    }

    /// Connects to `addr` within `timeout`, waiting through the poller like any other wait.
    pub fn connect(addr: &SocketAddr, timeout: Duration) -> io::Result<Socket> {
        let tcp: TcpStream = mio::net::TcpStream::connect(*addr)?.into();
        let mut socket = Socket::from_nonblocking(tcp, Side::Origin);
        let deadline = Instant::now() + timeout;
        loop {
            // Connected once the peer is known; a failed connect leaves its error in SO_ERROR.
            if let Some(e) = socket.tcp.take_error()? {
                return Err(e);
            }
            match socket.tcp.peer_addr() {
                Ok(_) => return Ok(socket),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => return Err(e),
            }
            socket
                .wait(Interest::WRITABLE, Some(deadline), State::OriginConnect)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::TimedOut => io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {addr} timed out"),
                    ),
                    _ => e,
                })?;
        }
    }

    /// The kernel socket, for peeks and options.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Hands the socket to a thread that is no worker (a tunnel's event loop, a holder), still in
    /// non-blocking mode.
    pub fn into_std(self) -> TcpStream {
        let Socket {
            mut registration,
            tcp,
            ..
        } = self;
        registration.release();
        tcp
    }

    /// Whether the socket is registered with the caller's worker: a pooled connection that is costs
    /// nothing to take over.
    pub fn is_on_this_worker(&self) -> bool {
        self.registration.is_here()
    }

    /// Whether bytes may be waiting: false only when the socket has said it is empty and no
    /// readiness came since, so waiting for it without a read first loses nothing.
    pub fn maybe_readable(&self) -> bool {
        self.registration.maybe_readable()
    }

    pub fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.nonblocking = on;
        Ok(())
    }

    /// Bounds each wait of a read; `None` waits for ever.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        Ok(())
    }

    /// Bounds how long a write may go without the peer taking any bytes.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout = timeout;
        Ok(())
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout)
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout)
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp.set_nodelay(on)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// Waits until the socket is ready for `interest` (after it said `WouldBlock`), or `deadline`.
    pub fn wait(
        &mut self,
        interest: Interest,
        deadline: Option<Instant>,
        state: State,
    ) -> io::Result<()> {
        reactor::wait_fd(
            self.tcp.as_fd(),
            &mut self.registration,
            interest,
            deadline,
            state,
        )
    }

    /// Waits for room to write, within the write timeout.
    pub fn wait_writable(&mut self) -> io::Result<()> {
        let deadline = self.write_timeout.map(|t| Instant::now() + t);
        let state = match self.side {
            Side::Client => State::ClientWrite,
            Side::Origin => State::OriginWrite,
        };
        self.wait(Interest::WRITABLE, deadline, state)
    }

    fn wait_readable(&mut self) -> io::Result<()> {
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        let state = match self.side {
            Side::Client => State::ClientRead,
            Side::Origin => State::OriginRead,
        };
        self.wait(Interest::READABLE, deadline, state)
    }

    /// Retries `op` after each `WouldBlock` once `wait` says the socket is ready (blocking mode).
    /// Counts `n` bytes read or written in blocking mode toward the next yield.
    fn spend(&mut self, n: usize) {
        if !self.nonblocking {
            self.moved.spend(n as u64);
        }
    }

    fn retry<T>(
        &mut self,
        wait: fn(&mut Socket) -> io::Result<()>,
        mut op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            match op(&self.tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.nonblocking => wait(self)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let asked = buf.len();
        // The socket said it was empty and no readiness came since: a read would only say
        // `WouldBlock` (after a TLS flight the peer must answer first, or a request head read
        // whole), so wait for the edge at once, or say so, without the system call.
        if asked > 0 && !self.registration.maybe_readable() {
            if self.nonblocking {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.wait_readable()?;
        }
        match self.retry(Socket::wait_readable, |mut tcp| tcp.read(buf)) {
            Ok(n) => {
                if n < asked {
                    self.registration.read_came_short();
                }
                self.spend(n);
                Ok(n)
            }
            Err(e) => {
                // In non-blocking mode: the socket said it is empty.
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.registration.read_came_short();
                }
                Err(e)
            }
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.retry(Socket::wait_writable, |mut tcp| tcp.write(buf))?;
        self.spend(n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.retry(Socket::wait_writable, |mut tcp| tcp.write_vectored(bufs))?;
        self.spend(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = Socket::connect(&addr, Duration::from_secs(5)).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (socket, peer)
    }

    #[test]
    fn a_blocking_read_outside_a_task_waits_for_bytes_and_times_out_without_them() {
        let (mut socket, mut peer) = pair();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 8];
        let error = socket.read(&mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        peer.write_all(b"hi").unwrap();
        assert_eq!(socket.read(&mut buf).unwrap(), 2);
        socket.set_nonblocking(true).unwrap();
        assert_eq!(
            socket.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn a_write_to_a_peer_that_reads_nothing_fails_after_the_write_timeout() {
        let (mut socket, _peer) = pair();
        socket
            .set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        let error = (0..64)
            .find_map(|_| socket.write_all(&chunk).err())
            .expect("the socket buffers fill up");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn connecting_to_a_closed_port_fails() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(Socket::connect(&addr, Duration::from_secs(5)).is_err());
    }
}
