//! The parker: one thread that holds idle connections in epoll (through mio) and hands each back to the
//! workers when bytes arrive, closing those that stay silent past their deadline.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{Conn, ServerStats, Shutdown};
use std::sync::atomic::Ordering;

const WAKER: Token = Token(usize::MAX);
/// How often deadlines are checked; a silent connection lives at most this long past its deadline.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The workers' side of the parker: hand it a connection to watch.
#[derive(Clone)]
pub struct ParkHandle {
    inbox: Sender<Conn>,
    waker: Arc<Waker>,
}

impl ParkHandle {
    /// Parks a connection until it is readable; it is dropped (closed) if the parker has stopped.
    pub fn park(&self, conn: Conn) {
        if self.inbox.send(conn).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Starts the parker thread. Readable connections go to `ready`.
pub fn start(
    ready: Sender<Conn>,
    idle_timeout: Duration,
    stats: Arc<ServerStats>,
    shutdown: Shutdown,
) -> io::Result<(ParkHandle, std::thread::JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    shutdown.add_waker(Arc::clone(&waker));
    let (inbox, parked) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("parker".into())
        .spawn(move || {
            let mut parker = Parker {
                poll,
                parked,
                ready,
                idle_timeout,
                stats,
                conns: HashMap::new(),
                next_token: 0,
            };
            if let Err(e) = parker.run(&shutdown) {
                log::error!("parker stopped: {e}");
            }
        })?;
    Ok((ParkHandle { inbox, waker }, thread))
}

struct Parker {
    poll: Poll,
    parked: Receiver<Conn>,
    ready: Sender<Conn>,
    idle_timeout: Duration,
    stats: Arc<ServerStats>,
    conns: HashMap<usize, Conn>,
    next_token: usize,
}

impl Parker {
    fn run(&mut self, shutdown: &Shutdown) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut last_sweep = Instant::now();
        while !shutdown.is_requested() {
            if let Err(e) = self.poll.poll(&mut events, Some(SWEEP_EVERY)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                if event.token() != WAKER {
                    self.wake(event.token().0);
                }
            }
            self.take_new();
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = Instant::now();
            }
        }
        Ok(())
    }

    fn take_new(&mut self) {
        while let Ok(conn) = self.parked.try_recv() {
            let token = self.next_token;
            self.next_token = self.next_token.wrapping_add(1) % (usize::MAX - 1);
            let fd = conn.stream.as_raw_fd();
            match self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(token),
                Interest::READABLE,
            ) {
                Ok(()) => {
                    self.conns.insert(token, conn);
                }
                Err(e) => log::debug!("cannot park connection from {}: {e}", conn.peer),
            }
        }
    }

    fn wake(&mut self, token: usize) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let fd = conn.stream.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            conn.set_readable();
            // Blocks only while the work queue is full: back-pressure, not loss.
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            if self.ready.send(conn).is_err() {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let idle_timeout = self.idle_timeout;
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline(idle_timeout) <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            if let Some(conn) = self.conns.remove(&token) {
                let fd = conn.stream.as_raw_fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                log::debug!("closing idle connection from {}", conn.peer);
            }
        }
    }
}
