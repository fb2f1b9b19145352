//! The listener, acceptor and worker pool shared by `porter proxy` and `porter serve`.
//!
//! The acceptor admits a socket (allow list, connection caps) and queues it on the bounded channel of
//! the least-loaded worker; when every queue is full it answers a quick 503. Each worker runs its
//! connections as tasks on its own event loop ([`super::reactor`]): a task reads a request head,
//! calls the [`Handler`], and waits for the next one, yielding the worker whenever a peer is slow.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::acl::Cidr;
use super::conn::{ConnCounter, HeadRead, PeerTrust, ReadMore, Refusal};
use super::socket::{Side, Socket};
use super::{ClientTimeouts, Conn, Shutdown};
use crate::http::{self, Limits, RequestHead};
use crate::runtime::reactor::{Gauges, Reactor, Remote, State};

/// What a server needs to know about its sockets and threads.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name for thread names and logs (`proxy`, `serve`).
    pub name: &'static str,
    pub listen: SocketAddr,
    pub workers: usize,
    /// Accepted connections that may wait for each worker to take them.
    pub queue: usize,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Client networks allowed to connect; others get 403.
    pub allow: Vec<Cidr>,
    pub limits: Limits,
    /// The three timeouts' values at start-up; the running server reads [`Server::timeouts`].
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    /// Timeout for each read a handler does on the client socket, and the longest a client may take
    /// no response bytes.
    pub client_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Read a PROXY protocol header (v1 or v2) at the start of connections (`--accept-proxy-protocol`);
    /// only connections from `allow`ed addresses get this far.
    pub accept_proxy_protocol: bool,
    /// Peers whose PROXY header is trusted (`--proxy-protocol-from`): with `accept_proxy_protocol`,
    /// a peer in these networks must send one, and any other peer's header is refused with 400.
    pub proxy_protocol_from: Vec<Cidr>,
}

/// Serves requests on a connection. Implemented by the proxy and the origin server.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request (or one unparseable head). Returns the connection to keep it alive, or
    /// `None` once it is closed or handed elsewhere (a CONNECT tunnel).
    fn handle(&self, conn: Conn, request: Result<RequestHead, http::Error>) -> Option<Conn>;

    /// Whether a client address may connect. By default the allow list the server started with; a
    /// handler whose configuration reloads answers from its current one.
    fn allows(&self, ip: std::net::IpAddr, configured: &[Cidr]) -> bool {
        configured.iter().any(|c| c.contains(ip))
    }

    /// Whether a PROXY protocol header from the peer at `ip` is trusted, for a handler whose
    /// configuration reloads (from its current one). `None`, the default: the list the server
    /// started with decides.
    fn trusts_proxy_header(&self, _ip: std::net::IpAddr) -> Option<PeerTrust> {
        None
    }

    /// Called when the acceptor turns a client away before any request is read (for logging).
    fn refused(&self, _peer: SocketAddr, _status: u16, _why: &str) {}

    /// TLS to run on every accepted connection (`porter serve --tls`), with the counters its
    /// handshakes go to; `None` (the default) serves plain HTTP.
    fn tls(&self) -> Option<ServerTls> {
        None
    }

    /// Called for a connection in [`super::conn::Layer::AwaitingFirstBytes`] whenever new bytes are
    /// in its buffer: the handler decides what the tunnel carries, or asks for more.
    fn first_bytes(&self, _conn: Conn) -> FirstBytes {
        FirstBytes::Done(None)
    }
}

/// What a TLS listener serves with: the rustls configuration and the handshake counters.
pub type ServerTls = (Arc<rustls::ServerConfig>, Arc<crate::tls::TlsStats>);

/// A handler's answer to the first bytes of a tunnel.
pub enum FirstBytes {
    /// Decided: the connection to keep serving (now with its new layer), or `None` when it is closed
    /// or handed elsewhere.
    Done(Option<Conn>),
    /// Not enough bytes to decide: wait until more arrive.
    NeedMore(Conn),
}

/// Live figures about the server for status pages and metrics.
#[derive(Default)]
pub struct ServerStats {
    pub connections: Arc<ConnCounter>,
    pub queued: AtomicUsize,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// Each worker's count of tasks and what they wait for.
    workers: crate::runtime::Mutex<Vec<Arc<Gauges>>>,
}

impl ServerStats {
    fn gauges(&self) -> Vec<Arc<Gauges>> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Connections waiting in `state`, over all workers.
    pub fn waiting(&self, state: State) -> usize {
        self.gauges().iter().map(|g| g.waiting(state)).sum()
    }

    /// The deepest task stack (bytes touched) on any worker so far.
    pub fn stack_high_water(&self) -> usize {
        self.gauges()
            .iter()
            .map(|g| g.stack_high_water())
            .max()
            .unwrap_or(0)
    }

    /// Connections with a request begun and not yet answered (not idle between requests).
    pub fn in_progress(&self) -> usize {
        self.gauges()
            .iter()
            .map(|g| g.tasks().saturating_sub(g.waiting(State::ClientIdle)))
            .sum()
    }
}

/// A bound listener, ready to run.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    stats: Arc<ServerStats>,
    timeouts: Arc<ClientTimeouts>,
    shutdown: Shutdown,
    last_accept_warning: crate::runtime::Mutex<Option<Instant>>,
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Whether an accepted socket has the listener's TCP_NODELAY already (Linux copies it).
const NODELAY_INHERITED: bool = cfg!(target_os = "linux");

/// How often a failing accept (out of descriptors) is retried while connections wait in the queue.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Where the acceptor left the listener's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptState {
    /// Accepted until `WouldBlock`: the next connection brings an event.
    Drained,
    /// Accept failed with connections possibly still queued: retry on a timer.
    BackingOff,
}

impl Server {
    pub fn bind(config: ServerConfig, shutdown: Shutdown) -> io::Result<Server> {
        let listener = super::listener::bind(config.listen)?;
        Ok(Server {
            listener,
            timeouts: Arc::new(ClientTimeouts::new(&config)),
            config,
            stats: Arc::default(),
            shutdown,
            last_accept_warning: crate::runtime::Mutex::new(None),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        Arc::clone(&self.stats)
    }

    /// The head, idle and client timeouts the running server reads; storing new values (a reload)
    /// reaches the connections and requests that start afterwards.
    pub fn timeouts(&self) -> Arc<ClientTimeouts> {
        Arc::clone(&self.timeouts)
    }

    /// Runs until shutdown is requested, then lets the workers finish what they hold (within the grace
    /// period) and returns.
    pub fn run<H: Handler>(self, handler: Arc<H>) -> io::Result<()> {
        // One stack per connection: say at start if the kernel's mapping limit is below it.
        if let Some(warning) = crate::runtime::limits::check_map_count(
            self.config.max_connections,
            self.config.workers,
        ) {
            log::warn!("{warning}");
        }
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<()>();
        let mut workers = Vec::with_capacity(self.config.workers);
        let mut inboxes = Vec::with_capacity(self.config.workers);
        for index in 0..self.config.workers {
            let reactor = Reactor::new()?;
            let remote = reactor.remote();
            self.shutdown.add_waker(remote.waker());
            self.stats
                .workers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(remote.gauges()));
            let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Conn>(self.config.queue);
            let worker = Worker {
                reactor,
                jobs: jobs_rx,
                handler: Arc::clone(&handler),
                timeouts: Arc::clone(&self.timeouts),
                stats: Arc::clone(&self.stats),
                shutdown: self.shutdown.clone(),
                done: done_tx.clone(),
            };
            workers.push(worker.spawn(index, &self.config)?);
            inboxes.push(Inbox {
                jobs: jobs_tx,
                remote,
            });
        }
        drop(done_tx);

        let accepted = self.accept_loop(&inboxes, handler.as_ref());
        // Closing the queues is what tells the workers to finish; wake them to see it.
        let remotes: Vec<Arc<Remote>> = inboxes.iter().map(|i| Arc::clone(&i.remote)).collect();
        drop(inboxes);
        for remote in remotes {
            let _ = remote.waker().wake();
        }

        // Workers leave their loop once their queue is closed and their connections have ended.
        let deadline = Instant::now() + self.config.shutdown_grace;
        let mut finished = 0;
        while finished < workers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match done_rx.recv_timeout(left) {
                Ok(()) => finished += 1,
                Err(_) => {
                    log::warn!(
                        "{} of {} workers still busy after the grace period; exiting anyway",
                        workers.len() - finished,
                        workers.len()
                    );
                    return accepted;
                }
            }
        }
        for worker in workers {
            let _ = worker.join();
        }
        accepted
    }

    /// Accepts until the listener says `WouldBlock`: the listener is edge-triggered, so a queue left
    /// half drained would get no new event until another client arrived. When accept fails (out of
    /// file descriptors: EMFILE, ENFILE), connections are left in the kernel's queue and the loop polls
    /// on a timer instead of waiting for an event, until descriptors are free again and the queue
    /// is drained.
    fn accept_loop<H: Handler>(&self, jobs: &[Inbox], handler: &H) -> io::Result<()> {
        let mut poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        self.shutdown.add_waker(waker);
        let fd = self.listener.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(16);
        let mut state = AcceptState::Drained;
        while !self.shutdown.is_requested() {
            let timeout = match state {
                AcceptState::Drained => None,
                AcceptState::BackingOff => Some(ACCEPT_RETRY),
            };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            state = self.accept_all(jobs, handler);
        }
        Ok(())
    }

    /// Accepts every queued connection; says whether the queue was drained or accept failed.
    fn accept_all<H: Handler>(&self, jobs: &[Inbox], handler: &H) -> AcceptState {
        let mut wake = Wakeups::new(jobs.len());
        let state = loop {
            match accept_nonblocking(&self.listener) {
                Ok(Some((stream, peer))) => {
                    self.admit(stream, peer, jobs, handler, &mut wake);
                    wake.count_one(jobs);
                }
                // A connection reset before it was taken.
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break AcceptState::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors and the like: retry on a timer instead of spinning.
                    self.warn_accept_failure(&e);
                    break AcceptState::BackingOff;
                }
            }
        };
        wake.send(jobs);
        state
    }

    /// Logs a failing accept at most once a second: under EMFILE it fails every retry.
    fn warn_accept_failure(&self, error: &io::Error) {
        let mut last = self
            .last_accept_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            log::warn!(
                "accept failed: {error}; retrying every {} ms",
                ACCEPT_RETRY.as_millis()
            );
            *last = Some(Instant::now());
        }
    }

    fn admit<H: Handler>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        jobs: &[Inbox],
        handler: &H,
        wake: &mut Wakeups,
    ) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if !handler.allows(peer.ip(), &self.config.allow) {
            self.refuse(stream, peer, 403, "client address not allowed", handler);
            return;
        }
        let slot = match self.stats.connections.admit(
            peer.ip(),
            self.config.max_connections,
            self.config.max_connections_per_client,
        ) {
            Ok(slot) => slot,
            Err(Refusal::TooManyConnections) => {
                return self.refuse(stream, peer, 503, "too many connections", handler);
            }
            Err(Refusal::TooManyFromClient) => {
                return self.refuse(
                    stream,
                    peer,
                    503,
                    "too many connections from this client",
                    handler,
                );
            }
        };
        if !NODELAY_INHERITED {
            let _ = stream.set_nodelay(true);
        }
        let mut socket = Socket::from_nonblocking(stream, Side::Client);
        let client_timeout = self.timeouts.client();
        let _ = socket.set_read_timeout(Some(client_timeout));
        let _ = socket.set_write_timeout(Some(client_timeout));
        let mut conn = Conn::new(socket, peer, slot, self.config.limits.max_head_bytes);
        if self.config.accept_proxy_protocol {
            let trust = handler
                .trusts_proxy_header(peer.ip())
                .unwrap_or_else(|| PeerTrust::of(peer.ip(), &self.config.proxy_protocol_from));
            conn.expect_proxy_header(trust);
        }
        if let Some((config, stats)) = handler.tls() {
            // The handshake runs on the worker, inside the connection's first reads (tls::stream).
            let Ok(server) = rustls::ServerConnection::new(config) else {
                return;
            };
            let authority = super::conn::Authority {
                host: self.config.listen.ip().to_string(),
                port: self.config.listen.port(),
            };
            let wrap = |socket| crate::tls::TlsStream::server(server, socket, stats);
            let Some(tls) = conn.into_tls(wrap, authority) else {
                return;
            };
            conn = tls;
        }
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match queue_on_least_loaded(jobs, conn, wake) {
            None => {}
            Some(conn) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                let Some(stream) = conn.into_parts().0.into_tcp() else {
                    return;
                };
                self.refuse(
                    stream,
                    peer,
                    503,
                    "all workers busy and the queue is full",
                    handler,
                );
            }
        }
    }

    fn refuse<H: Handler>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        status: u16,
        why: &str,
        handler: &H,
    ) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        handler.refused(peer, status, why);
        // The answer fits in the socket buffer; a non-blocking write never holds the acceptor.
        let _ = stream.set_nonblocking(true);
        let mut stream = stream;
        // The listener defers accept until the client's first bytes are in (`listener.rs`), so
        // they are always here: a socket closed with unread bytes sends a reset, which can reach
        // the client before the answer does and discard it. Take what has come (up to 64 KiB,
        // without waiting) so the close is a FIN after the answer.
        let mut unread = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(io::Read::read(&mut stream, &mut unread), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = stream.write_all(&crate::html::refusal(status, why));
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// accept4(2) with the new socket non-blocking from the start (one `ioctl` less per connection than
/// `TcpListener::accept` and a mode switch). `None` for a peer address that is not IP.
fn accept_nonblocking(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    use rustix::net::{SocketFlags, acceptfrom_with};
    let (fd, addr) = acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let stream = TcpStream::from(fd);
    let peer = match addr.and_then(|a| SocketAddr::try_from(a).ok()) {
        Some(peer) => peer,
        None => match stream.peer_addr() {
            Ok(peer) => peer,
            Err(_) => return Ok(None),
        },
    };
    Ok(Some((stream, peer)))
}

/// The acceptor's way to one worker: its queue, and its waker.
struct Inbox {
    jobs: Sender<Conn>,
    remote: Arc<Remote>,
}

/// How many more connections a worker that is running may hold than a sleeping one and still be
/// chosen: queuing on a running worker costs no wake-up (an `eventfd` write here, a context switch
/// there), which on a new connection per request is the largest cost after the kernel's TCP work.
/// Small enough that keep-alive connections still spread over every core.
const AWAKE_SLACK: usize = 2;

/// Connections the acceptor queues before it wakes the workers they went to: one wake-up then
/// serves all of a worker's new connections, and none waits long behind a stream of arrivals.
const WAKE_EVERY: usize = 8;

/// The workers given connections since the last wake-ups were sent.
struct Wakeups {
    owed: Vec<bool>,
    queued: usize,
}

impl Wakeups {
    fn new(workers: usize) -> Wakeups {
        Wakeups {
            owed: vec![false; workers],
            queued: 0,
        }
    }

    /// Counts a connection handled; every [`WAKE_EVERY`] the owed wake-ups go out.
    fn count_one(&mut self, inboxes: &[Inbox]) {
        self.queued += 1;
        if self.queued >= WAKE_EVERY {
            self.send(inboxes);
        }
    }

    /// Nudges each worker owed a wake-up (it is only woken if it sleeps).
    fn send(&mut self, inboxes: &[Inbox]) {
        for (inbox, owed) in inboxes.iter().zip(&mut self.owed) {
            if std::mem::take(owed) {
                inbox.remote.nudge();
            }
        }
        self.queued = 0;
    }
}

/// Queues `conn` on the least-loaded worker that has room, where a sleeping worker counts
/// [`AWAKE_SLACK`] connections more than it holds unless it is already owed a wake-up; gives it back
/// when every queue is full (or the workers are gone). The worker is woken by [`Wakeups::send`].
fn queue_on_least_loaded(inboxes: &[Inbox], conn: Conn, wake: &mut Wakeups) -> Option<Conn> {
    let cost = |i: usize| {
        let inbox = &inboxes[i];
        let load = inbox.remote.gauges().tasks() + inbox.jobs.len();
        let asleep = inbox.remote.is_sleeping() && !wake.owed[i];
        load + if asleep { AWAKE_SLACK } else { 0 }
    };
    let Some(first) = (0..inboxes.len()).min_by_key(|&i| cost(i)) else {
        return Some(conn);
    };
    // The chosen worker first, then the others in turn: any with room will do when it is full.
    let order = (0..inboxes.len()).map(|i| (first + i) % inboxes.len());
    let mut conn = conn;
    for i in order {
        match inboxes[i].jobs.try_send(conn) {
            Ok(()) => {
                wake.owed[i] = true;
                return None;
            }
            Err(TrySendError::Full(back)) | Err(TrySendError::Disconnected(back)) => conn = back,
        }
    }
    Some(conn)
}

/// What one worker thread owns: its event loop and queue, the handler, and the channel that tells
/// `run` it has finished.
struct Worker<H> {
    reactor: Reactor,
    jobs: Receiver<Conn>,
    handler: Arc<H>,
    timeouts: Arc<ClientTimeouts>,
    stats: Arc<ServerStats>,
    shutdown: Shutdown,
    done: Sender<()>,
}

impl<H: Handler> Worker<H> {
    fn spawn(self, index: usize, config: &ServerConfig) -> io::Result<JoinHandle<()>> {
        let limits = config.limits;
        let allow: Arc<[Cidr]> = config.allow.clone().into();
        std::thread::Builder::new()
            .name(format!("{}-worker-{index}", config.name))
            .spawn(move || {
                let Worker {
                    reactor,
                    jobs,
                    handler,
                    timeouts,
                    stats,
                    shutdown,
                    done,
                } = self;
                let task_shutdown = shutdown.clone();
                reactor.run(&jobs, &shutdown, |conn| {
                    stats.queued.fetch_sub(1, Ordering::Relaxed);
                    let handler = Arc::clone(&handler);
                    let timeouts = Arc::clone(&timeouts);
                    let shutdown = task_shutdown.clone();
                    let allow = Arc::clone(&allow);
                    Box::new(move || {
                        serve_connection(
                            conn,
                            &limits,
                            &timeouts,
                            handler.as_ref(),
                            &shutdown,
                            &allow,
                        )
                    })
                });
                let _ = done.send(());
            })
    }
}

/// Serves requests on a connection until it closes, waiting (yielding the worker) whenever the
/// client has sent nothing yet.
fn serve_connection<H: Handler>(
    mut conn: Conn,
    limits: &Limits,
    timeouts: &ClientTimeouts,
    handler: &H,
    shutdown: &Shutdown,
    allow: &[Cidr],
) {
    conn.idle_timeout = timeouts.idle();
    loop {
        if conn.awaits_first_bytes() {
            let read = conn.read_more();
            match read {
                ReadMore::Closed => return,
                // Bytes that came with the CONNECT head are already in the buffer.
                ReadMore::Pending if conn.buf.is_empty() => {
                    if conn.wait_readable().is_err() {
                        return;
                    }
                    continue;
                }
                ReadMore::Pending | ReadMore::Got => {}
            }
            match handler.first_bytes(conn) {
                FirstBytes::Done(Some(kept)) => conn = kept,
                FirstBytes::Done(None) => return,
                // Wait only once the socket said it is empty: a read that filled the buffer may
                // have left the rest of a large ClientHello in the kernel, with no edge to come.
                FirstBytes::NeedMore(waiting) => {
                    conn = waiting;
                    if matches!(read, ReadMore::Pending) && conn.wait_readable().is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        match conn.read_head(limits, timeouts.head()) {
            HeadRead::Ready(request) => {
                // The client a PROXY header names passes the same allow list as a direct one.
                if conn.take_relayed() && !handler.allows(conn.peer.ip(), allow) {
                    let why = "client address not allowed";
                    handler.refused(conn.peer, 403, why);
                    let _ = conn.stream.write_all(&crate::html::refusal(403, why));
                    return;
                }
                conn.make_blocking();
                match handler.handle(conn, request) {
                    Some(kept) if !shutdown.is_requested() => {
                        conn = kept;
                        conn.idle_since = Instant::now();
                        conn.idle_timeout = timeouts.idle();
                        // A client rarely sends its next request before reading this response:
                        // wait for it rather than try a read that would only say "not yet", when
                        // the socket said it was empty and no readiness came since. Not while TLS
                        // holds decrypted bytes the socket cannot show.
                        if conn.drained() {
                            conn.buf.shrink();
                            if !conn.stream.socket().maybe_readable()
                                && conn.wait_readable().is_err()
                            {
                                return;
                            }
                        }
                    }
                    _ => return,
                }
            }
            HeadRead::Pending if shutdown.is_requested() && conn.buf.is_empty() => return,
            HeadRead::Pending => {
                if conn.wait_readable().is_err() {
                    return;
                }
            }
            HeadRead::Closed => return,
            HeadRead::Refused(why) => {
                handler.refused(conn.peer, 400, why);
                let _ = conn.stream.write_all(&crate::html::refusal(400, why));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections are accepted without a `setsockopt(TCP_NODELAY)` of their own on Linux: the
    /// listener's must reach them, or small responses would wait for Nagle's delayed ACK.
    #[test]
    fn regression_an_accepted_connection_has_tcp_nodelay_without_setting_it() {
        let config = ServerConfig {
            name: "test",
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            queue: 8,
            max_connections: 8,
            max_connections_per_client: 8,
            allow: Cidr::loopback(),
            limits: Limits::default(),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            client_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::ZERO,
            accept_proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
        };
        let server = Server::bind(config, Shutdown::new()).unwrap();
        let _client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let accepted = loop {
            match accept_nonblocking(&server.listener) {
                Ok(Some((stream, _))) => break stream,
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
