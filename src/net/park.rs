//! The parker: one thread that holds idle connections in epoll (through mio) and hands each back to the
//! workers when bytes arrive, closing those that stay silent past their deadline.
//!
//! A worker parks a connection itself: it puts it in the shared table and registers its socket, in one
//! critical section, so the parker never has to be woken for it (no eventfd write, no extra context
//! switch per request). The parker only wakes when a parked socket becomes readable.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::{ClientTimeouts, Conn, ServerStats, Shutdown};

const WAKER: Token = Token(usize::MAX);
/// How often deadlines are checked; a silent connection lives at most this long past its deadline.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What workers and the parker share: the parked connections by token, and the epoll registry.
struct Table {
    conns: Mutex<Parked>,
    registry: Registry,
    next_token: AtomicUsize,
    /// Read as each connection is parked, for its idle timeout.
    timeouts: Arc<ClientTimeouts>,
}

#[derive(Default)]
struct Parked {
    conns: HashMap<usize, Conn>,
    /// Set when the parker has stopped: new connections are closed instead of parked.
    closed: bool,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, Parked> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes a connection and its registration.
    fn take(&self, parked: &mut Parked, token: usize) -> Option<Conn> {
        let conn = parked.conns.remove(&token)?;
        let fd = conn.stream.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        Some(conn)
    }
}

/// The workers' side of the parker: hand it a connection to watch.
#[derive(Clone)]
pub struct ParkHandle {
    table: Arc<Table>,
}

impl ParkHandle {
    /// Parks a connection until it is readable; it is dropped (closed) if the parker has stopped.
    pub fn park(&self, mut conn: Conn) {
        conn.parked_at = Instant::now();
        conn.idle_timeout = self.table.timeouts.idle();
        let token = self.table.next_token.fetch_add(1, Ordering::Relaxed) % (usize::MAX - 1);
        let fd = conn.stream.as_raw_fd();
        let register = || {
            self.table
                .registry
                .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
        };
        let mut parked = self.table.lock();
        if parked.closed {
            return;
        }
        if conn.mid_head() {
            // Its deadline may be close: register under the lock, so the sweep can never close the
            // socket between the insert and the registration.
            match register() {
                Ok(()) => {
                    parked.conns.insert(token, conn);
                }
                Err(e) => log::debug!("cannot park connection from {}: {e}", conn.peer),
            }
            return;
        }
        // The hot path: an idle connection, whose deadline is a whole idle timeout away. Insert, then
        // register outside the lock (an event cannot fire before the registration, and by then the
        // connection is in the table), so workers and the parker rarely wait for each other.
        parked.conns.insert(token, conn);
        drop(parked);
        if let Err(e) = register() {
            let mut parked = self.table.lock();
            if let Some(conn) = parked.conns.remove(&token) {
                log::debug!("cannot park connection from {}: {e}", conn.peer);
            }
        }
    }
}

/// Starts the parker thread. Readable connections go to `ready`.
pub fn start(
    ready: Sender<Conn>,
    timeouts: Arc<ClientTimeouts>,
    stats: Arc<ServerStats>,
    shutdown: Shutdown,
) -> io::Result<(ParkHandle, std::thread::JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    shutdown.add_waker(waker);
    let table = Arc::new(Table {
        conns: Mutex::default(),
        registry: poll.registry().try_clone()?,
        next_token: AtomicUsize::new(0),
        timeouts,
    });
    let parker = Parker {
        poll,
        table: Arc::clone(&table),
        ready,
        stats,
    };
    let thread = std::thread::Builder::new()
        .name("parker".into())
        .spawn(move || {
            let mut parker = parker;
            if let Err(e) = parker.run(&shutdown) {
                log::error!("parker stopped: {e}");
            }
            let mut parked = parker.table.lock();
            parked.closed = true;
            parked.conns.clear();
        })?;
    Ok((ParkHandle { table }, thread))
}

struct Parker {
    poll: Poll,
    table: Arc<Table>,
    ready: Sender<Conn>,
    stats: Arc<ServerStats>,
}

impl Parker {
    fn run(&mut self, shutdown: &Shutdown) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut readied = Vec::with_capacity(256);
        let mut last_sweep = Instant::now();
        while !shutdown.is_requested() {
            if let Err(e) = self.poll.poll(&mut events, Some(SWEEP_EVERY)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            {
                // Only map operations under the lock; the epoll_ctl calls happen after it.
                let mut parked = self.table.lock();
                for event in events.iter().filter(|e| e.token() != WAKER) {
                    if let Some(conn) = parked.conns.remove(&event.token().0) {
                        readied.push(conn);
                    }
                }
            }
            for conn in &mut readied {
                let fd = conn.stream.as_raw_fd();
                let _ = self.table.registry.deregister(&mut SourceFd(&fd));
                conn.set_readable();
            }
            for conn in readied.drain(..) {
                // Blocks only while the work queue is full: back-pressure, not loss.
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                if self.ready.send(conn).is_err() {
                    self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = Instant::now();
            }
        }
        Ok(())
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let mut parked = self.table.lock();
        let expired: Vec<usize> = parked
            .conns
            .iter()
            .filter(|(_, c)| c.deadline() <= now && now - c.parked_at >= SWEEP_EVERY)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            if let Some(conn) = self.table.take(&mut parked, token) {
                log::debug!("closing idle connection from {}", conn.peer);
            }
        }
    }
}
