//! A worker's own intake of new connections: the listening socket, shared by every worker and
//! registered in each worker's poller, so the worker that is free takes the connection and runs its
//! task at once, as nginx's workers do. No acceptor thread wakes for it and no hand-off to another
//! thread (a channel send and an eventfd wake-up) sits between the `accept4` and the first read.
//!
//! The listener is registered level-triggered with `EPOLLEXCLUSIVE` (Linux 4.5): a new connection
//! wakes one sleeping worker, not all of them, and a busy worker finds the connections still
//! waiting the next time it polls. Each poll that reports the listener accepts one connection (what
//! nginx does with `multi_accept off`): a loaded worker interleaves new connections with its
//! others, and one that is idle sleeps again in the same `epoll_wait` it would make anyway, so
//! no `accept4` per wake-up comes back `EAGAIN`. When accepting fails (out of descriptors:
//! `EMFILE`, `ENFILE`), the level-triggered listener would be reported again at once: the worker
//! takes it out of its poller for [`ACCEPT_RETRY`] and puts it back then, so it serves its connections
//! meanwhile and never spins.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use mio::{Registry, Token};
use rustix::event::epoll;

use super::Job;

/// The listener's token in every worker's poller (tasks' sockets count up from zero).
pub(super) const LISTENER: Token = Token(usize::MAX - 1);
/// How long a worker leaves the listener alone after accepting failed.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What one accept gave.
pub enum Accepted {
    /// A connection to serve: its task's body.
    Job(Job),
    /// A connection that was refused (and answered) or reset before it was taken.
    Nothing,
    /// No connection is waiting (another worker took it).
    Empty,
    /// Accepting failed (out of descriptors): leave the listener for [`ACCEPT_RETRY`].
    Failed,
}

/// A shared listening socket a worker accepts from, and what it does with each connection.
pub struct Intake<'a> {
    listener: BorrowedFd<'a>,
    accept: Box<dyn FnMut() -> Accepted + 'a>,
}

impl<'a> Intake<'a> {
    /// `accept` takes one connection from `listener` (non-blocking) and says what became of it.
    pub fn new(listener: BorrowedFd<'a>, accept: impl FnMut() -> Accepted + 'a) -> Intake<'a> {
        Intake {
            listener,
            accept: Box::new(accept),
        }
    }
}

/// Where a worker's intake stands.
pub(super) struct Listening<'a> {
    intake: Intake<'a>,
    /// Registered in the poller now.
    registered: bool,
    /// The poll reported connections waiting.
    ready: bool,
    /// After a failed accept: when to register again.
    paused_until: Option<Instant>,
    /// Closed for good (shutdown).
    closed: bool,
}

impl<'a> Listening<'a> {
    pub(super) fn start(intake: Intake<'a>, registry: &Registry) -> io::Result<Listening<'a>> {
        let mut listening = Listening {
            intake,
            registered: false,
            ready: false,
            paused_until: None,
            closed: false,
        };
        listening.register(registry)?;
        Ok(listening)
    }

    fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let data = epoll::EventData::new_u64(LISTENER.0 as u64);
        let flags = epoll::EventFlags::IN | epoll::EventFlags::EXCLUSIVE;
        match epoll::add(registry, self.intake.listener, data, flags) {
            // A kernel older than 4.5 has no EPOLLEXCLUSIVE: every worker wakes, one accepts.
            Err(rustix::io::Errno::INVAL) => {
                epoll::add(registry, self.intake.listener, data, epoll::EventFlags::IN)?
            }
            other => other?,
        }
        self.registered = true;
        Ok(())
    }

    fn deregister(&mut self, registry: &Registry) {
        if self.registered {
            let _ = epoll::delete(registry, self.intake.listener);
            self.registered = false;
        }
        self.ready = false;
    }

    /// The poll reported the listener.
    pub(super) fn on_ready(&mut self) {
        self.ready = !self.closed;
    }

    /// Stops taking connections for good (shutdown): those still queued are left to the kernel.
    pub(super) fn close(&mut self, registry: &Registry) {
        self.deregister(registry);
        self.closed = true;
        self.paused_until = None;
    }

    /// When the poll must wake to put the listener back, if it is paused.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Accepts one connection if the poll reported some, or puts the listener back once a pause
    /// is over; a job for the caller to spawn.
    pub(super) fn take(&mut self, registry: &Registry, now: Instant) -> Option<Job> {
        if let Some(until) = self.paused_until
            && now >= until
        {
            self.paused_until = None;
            if self.register(registry).is_err() {
                self.paused_until = Some(now + ACCEPT_RETRY);
            }
        }
        if !self.ready {
            return None;
        }
        self.ready = false;
        match (self.intake.accept)() {
            Accepted::Job(job) => Some(job),
            Accepted::Nothing | Accepted::Empty => None,
            Accepted::Failed => {
                self.deregister(registry);
                self.paused_until = Some(now + ACCEPT_RETRY);
                None
            }
        }
    }
}
