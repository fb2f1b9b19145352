//! One client connection: its socket, the bytes read ahead, and where its request head stands.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::runtime::Mutex;
use std::time::Instant;

use super::proxy_protocol::Parsed;
use super::socket::Socket;
use super::stream::Stream;
use crate::http::{self, Limits, ReadBuf, RequestHead};
use crate::runtime::State;
use crate::tls::TlsStream;

/// A client connection: the socket, bytes read but not yet used, and the deadline of a head in progress.
pub struct Conn {
    /// The socket; writes fail once the client has read nothing for the whole write timeout.
    pub stream: Stream,
    pub peer: SocketAddr,
    pub buf: ReadBuf,
    /// When the head being received must be complete; `None` between requests.
    head_deadline: Option<Instant>,
    /// When the connection last finished a request (or was accepted); idle time counts from here.
    pub idle_since: Instant,
    /// The idle timeout in force when it last went idle, so a reload that changes
    /// `--idle-timeout` reaches connections as they go idle, not those idle already.
    pub(crate) idle_timeout: std::time::Duration,
    /// Whether a PROXY protocol header must, or must not, still come first (`--accept-proxy-protocol`).
    proxy_header: ProxyHeader,
    /// Whose requests these are: the client's own, or those inside a CONNECT the handler took over.
    pub layer: Layer,
    /// The user the handler's authentication admitted the CONNECT of a terminated tunnel as: the
    /// requests inside carry no credentials of their own.
    pub user: Option<String>,
    _slot: ConnSlot,
}

/// Where a connection stands with the PROXY protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyHeader {
    /// Not accepted here, or already read (or absent).
    Done,
    /// A trusted peer (`--proxy-protocol-from`): the first bytes must be a PROXY header.
    Expected,
    /// Any other peer: first bytes that are a PROXY header are a forgery, refused.
    Untrusted,
    /// A header named a client: `peer` is now that client, to be checked once against --allow.
    Relayed,
}

/// Whether a peer may send a PROXY protocol header (`--proxy-protocol-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTrust {
    /// A listed peer: its first bytes must be a PROXY header.
    Trusted,
    /// Any other peer: a PROXY header from it is a forgery.
    Untrusted,
}

impl PeerTrust {
    /// The trust `ip` has under the `--proxy-protocol-from` networks `from`.
    pub fn of(ip: std::net::IpAddr, from: &[super::acl::Cidr]) -> PeerTrust {
        if from.iter().any(|c| c.contains(ip)) {
            PeerTrust::Trusted
        } else {
            PeerTrust::Untrusted
        }
    }
}

/// The `host:port` a CONNECT named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

/// What the bytes on a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// Requests from the client to this server.
    Direct,
    /// A CONNECT was answered and the handler wants the client's first bytes before it decides what
    /// the tunnel carries ([`super::Handler::first_bytes`]).
    AwaitingFirstBytes(Authority),
    /// Requests inside a CONNECT tunnel the handler terminated: each one goes to this authority.
    Inside(Authority),
}

/// What a read of whatever the socket holds found.
pub enum ReadMore {
    /// New bytes are in the buffer.
    Got,
    /// Nothing waiting now.
    Pending,
    /// The client closed, the socket failed, or the deadline passed.
    Closed,
}

/// What an attempt to read a request head found.
pub enum HeadRead {
    /// A whole head (or a reason it can never be one).
    Ready(Result<RequestHead, http::Error>),
    /// Not enough bytes yet, and none waiting on the socket.
    Pending,
    /// The client closed, the socket failed, or the head deadline passed.
    Closed,
    /// The connection broke the PROXY protocol rules (`--proxy-protocol-from`): answer 400 and close.
    Refused(&'static str),
}

/// Why the start of a connection is not a usable PROXY header.
enum HeaderFault {
    /// A malformed header from a trusted peer: answered like a malformed request.
    Http(http::Error),
    /// A header from an untrusted peer, or none from a trusted one.
    Refused(&'static str),
}

impl Conn {
    pub(crate) fn new(stream: Socket, peer: SocketAddr, slot: ConnSlot, buf_size: usize) -> Self {
        Conn {
            stream: Stream::Plain(stream),
            peer,
            buf: ReadBuf::with_capacity(buf_size),
            head_deadline: None,
            idle_since: Instant::now(),
            idle_timeout: std::time::Duration::ZERO,
            proxy_header: ProxyHeader::Done,
            layer: Layer::Direct,
            user: None,
            _slot: slot,
        }
    }

    /// With `--accept-proxy-protocol`: a trusted peer must start with a PROXY header, any other
    /// must not (it could name any client it likes).
    pub(crate) fn expect_proxy_header(&mut self, trust: PeerTrust) {
        self.proxy_header = match trust {
            PeerTrust::Trusted => ProxyHeader::Expected,
            PeerTrust::Untrusted => ProxyHeader::Untrusted,
        };
    }

    /// Whether a PROXY header replaced `peer` with the client it relays, since the last call: that
    /// client must pass the allow list too.
    pub(crate) fn take_relayed(&mut self) -> bool {
        let relayed = self.proxy_header == ProxyHeader::Relayed;
        if relayed {
            self.proxy_header = ProxyHeader::Done;
        }
        relayed
    }

    /// From a trusted peer: consumes the PROXY header and takes the client it names (refused when
    /// there is none); from an untrusted one: refuses a header. `Ok(false)` when more bytes are
    /// needed to tell.
    fn read_proxy_header(&mut self) -> Result<bool, HeaderFault> {
        if self.proxy_header == ProxyHeader::Untrusted {
            return match super::proxy_protocol::parse(self.buf.data()) {
                Ok(Parsed::NeedMore) => Ok(false),
                Ok(Parsed::Absent) => {
                    self.proxy_header = ProxyHeader::Done;
                    Ok(true)
                }
                // Well-formed or not, it claims to speak for another client.
                Ok(Parsed::Header { .. }) | Err(_) => {
                    self.proxy_header = ProxyHeader::Done;
                    Err(HeaderFault::Refused(
                        "PROXY protocol header from a peer not in --proxy-protocol-from",
                    ))
                }
            };
        }
        if self.proxy_header != ProxyHeader::Expected {
            return Ok(true);
        }
        match super::proxy_protocol::parse(self.buf.data()) {
            Ok(Parsed::NeedMore) => Ok(false),
            Ok(Parsed::Absent) => {
                self.proxy_header = ProxyHeader::Done;
                Err(HeaderFault::Refused(
                    "no PROXY protocol header from a peer in --proxy-protocol-from",
                ))
            }
            Ok(Parsed::Header { len, client }) => {
                self.buf.consume(len);
                self.proxy_header = ProxyHeader::Done;
                if let Some(client) = client {
                    log::debug!("{}: PROXY protocol names client {client}", self.peer);
                    self.peer = client;
                    self.proxy_header = ProxyHeader::Relayed;
                }
                Ok(true)
            }
            Err(e) => {
                log::debug!("{}: {e}", self.peer);
                self.proxy_header = ProxyHeader::Done;
                Err(HeaderFault::Http(http::Error::Malformed(
                    "malformed PROXY protocol header",
                )))
            }
        }
    }

    /// Takes the connection apart, for a handler that moves the socket elsewhere (a tunnel). The slot
    /// keeps the client counted as connected until it is dropped.
    pub fn into_parts(self) -> (Stream, ReadBuf, ConnSlot) {
        (self.stream, self.buf, self._slot)
    }

    /// After answering a CONNECT: wait (yielding the worker, within `timeout`) for the client's
    /// first bytes.
    pub fn await_first_bytes(&mut self, authority: Authority, timeout: std::time::Duration) {
        self.layer = Layer::AwaitingFirstBytes(authority);
        self.head_deadline = Some(Instant::now() + timeout);
    }

    /// Runs TLS on the socket from now on, for requests inside the tunnel to `authority`. The TLS
    /// session has been fed the buffered bytes already, so the buffer is cleared. `None` if the
    /// stream is TLS already.
    pub fn into_tls(
        self,
        wrap: impl FnOnce(Socket) -> TlsStream,
        authority: Authority,
    ) -> Option<Conn> {
        let Conn {
            stream,
            peer,
            mut buf,
            head_deadline,
            idle_since,
            idle_timeout,
            layer: _,
            proxy_header: _,
            user,
            _slot,
        } = self;
        let socket = stream.into_socket()?;
        let tls = wrap(socket);
        buf.consume(buf.data().len());
        Some(Conn {
            stream: Stream::Tls(Box::new(tls)),
            peer,
            buf,
            head_deadline,
            idle_since,
            idle_timeout,
            layer: Layer::Inside(authority),
            // Inside a tunnel: a PROXY header only ever opens the raw connection.
            proxy_header: ProxyHeader::Done,
            user,
            _slot,
        })
    }

    /// The authority of the tunnel this connection's requests are inside, if any.
    pub fn inside(&self) -> Option<&Authority> {
        match &self.layer {
            Layer::Inside(authority) => Some(authority),
            _ => None,
        }
    }

    /// Whether the handler waits for the first bytes of a tunnel.
    pub(crate) fn awaits_first_bytes(&self) -> bool {
        matches!(self.layer, Layer::AwaitingFirstBytes(_))
    }

    /// Whether there is nothing to read but what the socket may bring: safe to wait on the socket.
    pub(crate) fn drained(&mut self) -> bool {
        self.buf.is_empty() && !self.stream.has_buffered_input()
    }

    /// Reads what the socket holds now, without waiting.
    pub(crate) fn read_more(&mut self) -> ReadMore {
        if self.head_deadline.is_some_and(|d| Instant::now() >= d) || self.buf.is_full() {
            return ReadMore::Closed;
        }
        self.set_nonblocking(true);
        loop {
            match self.buf.fill_from(&mut self.stream) {
                Ok(0) => return ReadMore::Closed,
                Ok(_) => return ReadMore::Got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadMore::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return ReadMore::Closed,
            }
        }
    }

    /// When the connection is given up if no bytes come: the head's deadline while one is begun,
    /// else the end of its idle time.
    pub(crate) fn deadline(&self) -> Instant {
        self.head_deadline
            .unwrap_or(self.idle_since + self.idle_timeout)
    }

    /// Waits (yielding the worker) until the client sends more or the connection's deadline passes:
    /// `Err` when it passed, or the server is shutting down and the connection was idle.
    pub(crate) fn wait_readable(&mut self) -> io::Result<()> {
        let state = if self.head_deadline.is_some() && !self.buf.is_empty() {
            State::ClientHead
        } else if self.head_deadline.is_some() || self.awaits_first_bytes() {
            // A TLS handshake, or the first bytes inside a tunnel.
            State::ClientRead
        } else {
            State::ClientIdle
        };
        let deadline = self.deadline();
        self.stream
            .socket_mut()
            .wait(mio::Interest::READABLE, Some(deadline), state)
    }

    /// A mode switch of the socket is a field change (see [`Socket`]), so it cannot fail.
    fn set_nonblocking(&mut self, on: bool) {
        let _ = self.stream.set_nonblocking(on);
    }

    /// Puts the socket back in blocking mode (with its timeouts) for a handler.
    pub fn make_blocking(&mut self) {
        self.set_nonblocking(false);
    }

    /// Reads what the socket has without waiting and tries to parse a request head from it.
    pub fn read_head(&mut self, limits: &Limits, head_timeout: std::time::Duration) -> HeadRead {
        loop {
            let header_done = match self.read_proxy_header() {
                Ok(done) => done,
                Err(HeaderFault::Http(e)) => return HeadRead::Ready(Err(e)),
                Err(HeaderFault::Refused(why)) => return HeadRead::Refused(why),
            };
            if !self.buf.is_empty() {
                // Until a PROXY header is whole, nothing of the request can be parsed.
                let parsed = if header_done {
                    http::parse::request(self.buf.data(), limits)
                } else {
                    Ok(None)
                };
                match parsed {
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
                self.head_deadline
                    .get_or_insert_with(|| Instant::now() + head_timeout);
            }
            // Also a TLS handshake's deadline, while the buffer has no plaintext yet.
            if self.head_deadline.is_some_and(|d| Instant::now() >= d) {
                return HeadRead::Closed;
            }
            self.set_nonblocking(true);
            match self.buf.fill_from(&mut self.stream) {
                Ok(0) => return HeadRead::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if self.buf.is_empty() && !self.stream.is_handshaking() {
                        // Handshake over and no request begun: the idle timeout applies, not the
                        // handshake's deadline.
                        self.head_deadline = None;
                    }
                    return HeadRead::Pending;
                }
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
