//! One client connection as it moves between the acceptor, the workers and the parker.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::client_stream::ClientStream;
use crate::http::{self, Limits, ReadBuf, RequestHead};

/// A client connection: the socket, bytes read but not yet used, and the deadline of a head in progress.
pub struct Conn {
    /// The socket; writes to it fail once the client has read nothing for the whole write timeout.
    pub stream: ClientStream,
    pub peer: SocketAddr,
    pub buf: ReadBuf,
    /// When the head being received must be complete; `None` between requests.
    head_deadline: Option<Instant>,
    /// When the connection last finished a request (or was accepted); idle time counts from here.
    pub idle_since: Instant,
    /// When it was last handed to the parker: the sweep leaves just-parked connections alone, so it
    /// never closes one a worker is still registering.
    pub(crate) parked_at: Instant,
    nonblocking: bool,
    /// The parker saw the socket readable: the next read will not block, so it can skip the switch
    /// to non-blocking mode (two fcntl calls per request saved on the hot path).
    readable: bool,
    _slot: ConnSlot,
}

/// What an attempt to read a request head found.
pub enum HeadRead {
    /// A whole head (or a reason it can never be one).
    Ready(Result<RequestHead, http::Error>),
    /// Not enough bytes yet, and none waiting on the socket.
    Pending,
    /// The client closed, the socket failed, or the head deadline passed.
    Closed,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnSlot,
        buf_size: usize,
    ) -> Self {
        Conn {
            stream: ClientStream::new(stream),
            peer,
            buf: ReadBuf::with_capacity(buf_size),
            head_deadline: None,
            idle_since: Instant::now(),
            parked_at: Instant::now(),
            nonblocking: false,
            readable: false,
            _slot: slot,
        }
    }

    /// Takes the connection apart, for a handler that moves the socket elsewhere (a tunnel). The slot
    /// keeps the client counted as connected until it is dropped.
    pub fn into_parts(self) -> (TcpStream, ReadBuf, ConnSlot) {
        (self.stream.into_inner(), self.buf, self._slot)
    }

    /// Whether a request head is half received (so the connection's deadline is near).
    pub(crate) fn mid_head(&self) -> bool {
        self.head_deadline.is_some()
    }

    /// When the parker should give up on this connection.
    pub(crate) fn deadline(&self, idle_timeout: std::time::Duration) -> Instant {
        self.head_deadline.unwrap_or(self.idle_since + idle_timeout)
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        if self.nonblocking != on {
            self.stream.set_nonblocking(on)?;
            self.nonblocking = on;
        }
        Ok(())
    }

    /// Marks the socket as known to have bytes (or end-of-stream) to read.
    pub(crate) fn set_readable(&mut self) {
        self.readable = true;
    }

    /// Puts the socket back in blocking mode (with its timeouts) for a handler.
    pub fn make_blocking(&mut self) -> io::Result<()> {
        self.set_nonblocking(false)
    }

    /// Reads what the socket has without waiting and tries to parse a request head from it.
    pub fn read_head(&mut self, limits: &Limits, head_timeout: std::time::Duration) -> HeadRead {
        loop {
            if !self.buf.is_empty() {
                match http::parse::request(self.buf.data(), limits) {
                    Ok(Some((head, len))) => {
                        self.buf.consume(len);
                        self.head_deadline = None;
                        return HeadRead::Ready(Ok(head));
                    }
                    Ok(None) if self.buf.is_full() => {
                        return HeadRead::Ready(Err(http::Error::HeadTooLarge));
                    }
                    Ok(None) => {}
                    Err(e) => return HeadRead::Ready(Err(e)),
                }
                let deadline = *self
                    .head_deadline
                    .get_or_insert_with(|| Instant::now() + head_timeout);
                if Instant::now() >= deadline {
                    return HeadRead::Closed;
                }
            }
            if !std::mem::take(&mut self.readable) && self.set_nonblocking(true).is_err() {
                return HeadRead::Closed;
            }
            match self.buf.fill_from(&mut self.stream) {
                Ok(0) => return HeadRead::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return HeadRead::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return HeadRead::Closed,
            }
        }
    }
}

/// Counts open connections, in total and per client address, for the caps and the status page.
#[derive(Default)]
pub struct ConnCounter {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    TooManyFromClient,
}

impl ConnCounter {
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip` if both caps allow it; the slot releases it when dropped.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_client: usize,
    ) -> Result<ConnSlot, Refusal> {
        let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if self.total.load(Ordering::Relaxed) >= max_total {
            return Err(Refusal::TooManyConnections);
        }
        let count = per_client.entry(ip).or_insert(0);
        if *count >= max_per_client {
            return Err(Refusal::TooManyFromClient);
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnSlot {
            counter: Arc::clone(self),
            ip,
        })
    }
}

/// A held place in the connection counts, given back on drop.
pub struct ConnSlot {
    counter: Arc<ConnCounter>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut per_client = self
            .counter
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_client.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.ip);
            }
        }
        self.counter.total.fetch_sub(1, Ordering::Relaxed);
    }
}
