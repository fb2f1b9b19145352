//! A worker's waits: which task waits for what and until when, the readiness of each registered
//! socket, and the timers. Tasks reach it through a thread-local (they run on the worker's thread),
//! the worker's loop through [`with_current`].
//!
//! Each socket has its own token and readiness bits. An event sets the bits and wakes the socket's
//! owner if it waits for that readiness; a read or write that says `WouldBlock`, or a read that came
//! back short, clears the bit. So a bit that is clear means nothing unread has arrived (its edge is
//! still to come), and a task can wait for a keep-alive client's next request without first
//! reading to see `WouldBlock`.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::{Gauges, Remote, State};
use crate::runtime::task;

/// One task's identity: its slot, and which use of the slot (a stale wake-up must not reach the
/// next connection in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKey {
    pub(super) slot: u32,
    pub(super) generation: u32,
}

/// What other threads send a worker besides connections.
pub(super) enum Message {
    /// End this task's wait if another thread can end it (an entry's progress, a lookup's answer,
    /// a disk job's end).
    Wake(TaskKey),
    /// A socket registered here moved to another worker: its slot is free.
    Release(SourceKey),
}

/// A registered socket's slot in its worker, and which use of the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SourceKey {
    slot: u32,
    generation: u32,
}

impl SourceKey {
    fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.slot as usize)
    }

    pub(super) fn from_token(token: Token) -> SourceKey {
        SourceKey {
            slot: token.0 as u32,
            generation: (token.0 >> 32) as u32,
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Woken {
    Ready,
    TimedOut,
    /// The server is shutting down and the task was idle.
    Shutdown,
}

/// A task's current wait.
#[derive(Default)]
pub(super) struct Wait {
    pub(super) generation: u32,
    /// `None` when the task is not waiting.
    pub(super) state: Option<State>,
    /// The socket and readiness a socket wait waits for; `None` for other waits.
    on: Option<(SourceKey, Interest)>,
    timer: Option<(Instant, u64)>,
    outcome: Option<Woken>,
    /// The state of the wait that ended last (named if the task then overflows its stack).
    last: Option<State>,
}

/// A registered socket: who owns it now, and what readiness has come since it last said
/// `WouldBlock`.
#[derive(Default)]
struct Source {
    generation: u32,
    owner: Option<TaskKey>,
    readable: bool,
    writable: bool,
    /// The peer has closed its side (or the socket failed): a read may still find the end of the
    /// stream after a short read emptied it of bytes, and no further edge would say so.
    read_closed: bool,
    /// Registered for write readiness too (see `Registration::ensure`).
    writes_watched: bool,
}

/// The worker's state that its tasks reach through the thread-local.
pub(super) struct Current {
    pub(super) worker: usize,
    registry: Arc<Registry>,
    pub(super) remote: Arc<Remote>,
    gauges: Arc<Gauges>,
    pub(super) running: Option<TaskKey>,
    pub(super) waits: Vec<Wait>,
    sources: Vec<Source>,
    free_sources: Vec<u32>,
    timers: BTreeMap<(Instant, u64), TaskKey>,
    next_timer: u64,
    pub(super) runnable: VecDeque<TaskKey>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Installs the worker's state on this thread (`None` removes it).
pub(super) fn install(current: Option<Current>) {
    CURRENT.with(|c| *c.borrow_mut() = current);
}

pub(super) fn with_current<R>(f: impl FnOnce(&mut Current) -> R) -> R {
    CURRENT.with(|c| {
        f(c.borrow_mut()
            .as_mut()
            .expect("the worker's reactor is set"))
    })
}

/// The running task's worker and key, if the caller runs in a task.
pub(super) fn running() -> Option<(Arc<Remote>, TaskKey)> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let c = c.as_ref()?;
        Some((Arc::clone(&c.remote), c.running?))
    })
}

/// Where a socket is registered: which worker's poller, in which slot.
#[derive(Default)]
pub struct Registration {
    at: Option<Registered>,
}

struct Registered {
    remote: Arc<Remote>,
    worker: usize,
    fd: RawFd,
    key: SourceKey,
}

impl Registration {
    /// Takes the socket out of its poller, before it moves to a thread that is no worker (a tunnel)
    /// and would otherwise keep waking this one, or before its descriptor closes on a thread that is
    /// not its worker (the number could be reused and registered there meanwhile).
    pub fn release(&mut self) {
        let Some(at) = self.at.take() else { return };
        let here = CURRENT.with(|c| match c.try_borrow_mut() {
            Ok(mut c) => c
                .as_mut()
                .filter(|c| c.worker == at.worker)
                .map(|c| c.free_source(at.key))
                .is_some(),
            Err(_) => false,
        });
        let _ = at.remote.registry().deregister(&mut SourceFd(&at.fd));
        if !here {
            at.remote.send(Message::Release(at.key));
        }
    }

    /// Whether the socket may have unread bytes: readiness came since it last said `WouldBlock` (or
    /// came back short), or it is not registered with this worker, so nothing is known.
    pub fn maybe_readable(&self) -> bool {
        let Some(at) = &self.at else { return true };
        CURRENT.with(|c| match c.try_borrow() {
            Ok(c) => c
                .as_ref()
                .filter(|c| c.worker == at.worker)
                .and_then(|c| c.source(at.key))
                .is_none_or(|s| s.readable),
            Err(_) => true,
        })
    }

    /// Whether the socket is registered with the worker the caller runs on (so a task there takes
    /// it over without a system call).
    pub fn is_here(&self) -> bool {
        let Some(at) = &self.at else { return false };
        CURRENT.with(|c| {
            c.try_borrow()
                .is_ok_and(|c| c.as_ref().is_some_and(|c| c.worker == at.worker))
        })
    }

    /// A read took fewer bytes than it asked for: the socket was empty then, and any later bytes
    /// bring an edge.
    pub fn read_came_short(&self) {
        let Some(at) = &self.at else { return };
        CURRENT.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut()
                && let Some(c) = c.as_mut().filter(|c| c.worker == at.worker)
                && let Some(source) = c.source_mut(at.key)
            {
                source.readable = source.read_closed;
            }
        });
    }

    /// Registers `fd` with the current worker (once) and makes the running task its owner.
    ///
    /// A socket whose first wait is for reading (a new client's request) is registered for reading
    /// only: registered for writing too, its empty send buffer would report an edge at once and
    /// cost the worker a round of `epoll_wait` for nothing. Its first wait for room to write (a
    /// response larger than the send buffer) adds writing, once (`EPOLL_CTL_MOD`).
    fn ensure(
        &mut self,
        fd: RawFd,
        current: &mut Current,
        task: TaskKey,
        interest: Interest,
    ) -> io::Result<SourceKey> {
        if let Some(at) = &self.at
            && at.worker == current.worker
            && let Some(source) = current.source_mut(at.key)
        {
            source.owner = Some(task);
            if interest.is_writable() && !source.writes_watched {
                current.registry.reregister(
                    &mut SourceFd(&fd),
                    at.key.token(),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                if let Some(source) = current.source_mut(at.key) {
                    source.writes_watched = true;
                }
            }
            return Ok(at.key);
        }
        // Never registered, or last used on another worker (a pooled origin connection).
        self.release();
        let key = current.new_source(task);
        let watch = if interest.is_writable() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(e) = current
            .registry
            .register(&mut SourceFd(&fd), key.token(), watch)
        {
            current.free_source(key);
            return Err(e);
        }
        if let Some(source) = current.source_mut(key) {
            source.writes_watched = watch.is_writable();
        }
        self.at = Some(Registered {
            remote: Arc::clone(&current.remote),
            worker: current.worker,
            fd,
            key,
        });
        Ok(key)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // On its own worker the close that follows takes the socket out of the poller; elsewhere
        // it must leave first.
        let Some(at) = &self.at else { return };
        let own = CURRENT.with(|c| match c.try_borrow_mut() {
            Ok(mut c) => match c.as_mut().filter(|c| c.worker == at.worker) {
                Some(c) => {
                    c.free_source(at.key);
                    true
                }
                None => false,
            },
            Err(_) => false,
        });
        if own {
            self.at = None;
        } else {
            self.release();
        }
    }
}

/// Waits until `fd` is ready for `interest` or `deadline` passes (`TimedOut`). In a task it yields to
/// the worker; on any other thread it blocks in poll(2). Called after the socket said `WouldBlock`
/// (so its readiness bit is cleared first), or, for a read, when the bit says nothing came.
pub fn wait_fd(
    fd: BorrowedFd<'_>,
    registration: &mut Registration,
    interest: Interest,
    deadline: Option<Instant>,
    state: State,
) -> io::Result<()> {
    let registered = CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(current) => match current.running {
                Some(task) => {
                    let key = registration.ensure(fd.as_raw_fd(), current, task, interest)?;
                    if let Some(source) = current.source_mut(key) {
                        if interest.is_readable() {
                            source.readable = false;
                        } else {
                            source.writable = false;
                        }
                    }
                    Ok::<_, io::Error>(Some(key))
                }
                None => Ok(None),
            },
            None => Ok(None),
        }
    })?;
    let Some(key) = registered else {
        return poll_fd(fd, interest, deadline);
    };
    match park(state, deadline, Some((key, interest))) {
        Woken::Ready => Ok(()),
        Woken::TimedOut => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out waiting ({})", state.as_str()),
        )),
        Woken::Shutdown => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server is shutting down",
        )),
    }
}

/// Yields the running task (one that holds a `TaskWaker` from `current_task`) until the waker is
/// used or `deadline` passes. Callers check their condition again either way.
pub fn park_until(state: State, deadline: Instant) {
    park(state, Some(deadline), None);
}

/// Lets the worker run its other ready tasks before this one goes on: a task that never hits
/// `WouldBlock` (a large entry to a fast client) would otherwise keep them all waiting. Outside a
/// task it does nothing.
pub fn yield_now() {
    let queued = CURRENT.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => match c.as_mut() {
            Some(c) => match c.running {
                Some(task) => {
                    c.runnable.push_back(task);
                    true
                }
                None => false,
            },
            None => false,
        },
        Err(_) => false,
    });
    if queued {
        task::suspend();
    }
}

/// Bytes a copy moves between yields: a fast peer never makes a socket say `WouldBlock`, so a large
/// body would otherwise keep the worker's other connections waiting.
pub const YIELD_EVERY: u64 = 4 << 20;

/// Counts the bytes a copy moves and yields (see [`yield_now`]) every [`YIELD_EVERY`] of them.
#[derive(Default)]
pub struct YieldBudget {
    since: u64,
}

impl YieldBudget {
    pub fn spend(&mut self, bytes: u64) {
        self.since += bytes;
        if self.since >= YIELD_EVERY {
            self.since = 0;
            yield_now();
        }
    }
}

/// Records the running task's wait and yields; returns how the wait ended.
fn park(state: State, deadline: Option<Instant>, on: Option<(SourceKey, Interest)>) -> Woken {
    with_current(|c| {
        let key = c.running.expect("park runs in a task");
        let timer = deadline.map(|at| {
            c.next_timer += 1;
            let id = (at, c.next_timer);
            c.timers.insert(id, key);
            id
        });
        let wait = &mut c.waits[key.slot as usize];
        wait.state = Some(state);
        wait.on = on;
        wait.timer = timer;
        wait.outcome = None;
        c.gauges.count_wait(state, true);
    });
    task::suspend();
    #[cfg(debug_assertions)]
    super::overflow_on_purpose();
    with_current(|c| {
        let key = c.running.expect("a task resumes on its worker");
        c.waits[key.slot as usize]
            .outcome
            .take()
            .unwrap_or(Woken::Ready)
    })
}

impl Current {
    pub(super) fn new(worker: usize, registry: Arc<Registry>, remote: Arc<Remote>) -> Current {
        Current {
            worker,
            registry,
            gauges: Arc::clone(remote.gauges()),
            remote,
            running: None,
            waits: Vec::new(),
            sources: Vec::new(),
            free_sources: Vec::new(),
            timers: BTreeMap::new(),
            next_timer: 0,
            runnable: VecDeque::new(),
        }
    }

    fn source(&self, key: SourceKey) -> Option<&Source> {
        self.sources
            .get(key.slot as usize)
            .filter(|s| s.generation == key.generation)
    }

    fn source_mut(&mut self, key: SourceKey) -> Option<&mut Source> {
        self.sources
            .get_mut(key.slot as usize)
            .filter(|s| s.generation == key.generation)
    }

    fn new_source(&mut self, owner: TaskKey) -> SourceKey {
        let slot = self.free_sources.pop().unwrap_or_else(|| {
            self.sources.push(Source::default());
            (self.sources.len() - 1) as u32
        });
        let source = &mut self.sources[slot as usize];
        source.owner = Some(owner);
        // The registration reports what is ready already.
        source.readable = false;
        source.writable = false;
        source.read_closed = false;
        SourceKey {
            slot,
            generation: source.generation,
        }
    }

    pub(super) fn free_source(&mut self, key: SourceKey) {
        if let Some(source) = self.source_mut(key) {
            source.generation = source.generation.wrapping_add(1);
            source.owner = None;
            self.free_sources.push(key.slot);
        }
    }

    /// A socket event: it sets the socket's readiness and ends its owner's wait if that wait is for
    /// this socket and this readiness (a write-space edge after an ACK must not end a wait for the
    /// next request).
    pub(super) fn on_event(&mut self, event: &mio::event::Event) {
        let key = SourceKey::from_token(event.token());
        let Some(source) = self.source_mut(key) else {
            return;
        };
        let failed = event.is_error();
        source.read_closed |= failed || event.is_read_closed();
        source.readable |= failed || event.is_readable() || event.is_read_closed();
        source.writable |= failed || event.is_writable() || event.is_write_closed();
        let (readable, writable) = (source.readable, source.writable);
        let Some(task) = source.owner else { return };
        let Some(wait) = self.waits.get(task.slot as usize) else {
            return;
        };
        let answers = match wait.on {
            Some((on, interest)) if on == key && wait.generation == task.generation => {
                if interest.is_readable() {
                    readable
                } else {
                    writable
                }
            }
            _ => false,
        };
        if answers {
            self.wake(task, Woken::Ready, None);
        }
    }

    /// A message from another thread.
    pub(super) fn on_message(&mut self, message: Message) {
        match message {
            // Only the waits another thread can end: never a socket wait.
            Message::Wake(task) => {
                for state in [State::Entry, State::Resolve, State::Disk] {
                    self.wake(task, Woken::Ready, Some(state));
                }
            }
            Message::Release(key) => self.free_source(key),
        }
    }

    /// Ends `task`'s wait with `outcome` and queues it to run, if it is waiting (and, with `only`,
    /// waiting in that state).
    fn wake(&mut self, task: TaskKey, outcome: Woken, only: Option<State>) {
        let Some(wait) = self.waits.get_mut(task.slot as usize) else {
            return;
        };
        if wait.generation != task.generation {
            return;
        }
        let Some(state) = wait.state else { return };
        if only.is_some_and(|s| s != state) {
            return;
        }
        wait.state = None;
        wait.last = Some(state);
        wait.on = None;
        wait.outcome = Some(outcome);
        if let Some(timer) = wait.timer.take() {
            self.timers.remove(&timer);
        }
        self.gauges.count_wait(state, false);
        self.runnable.push_back(task);
    }

    pub(super) fn expire_timers(&mut self, now: Instant) {
        while let Some((&(at, id), &task)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            if let Some(wait) = self.waits.get_mut(task.slot as usize) {
                wait.timer = None;
            }
            self.wake(task, Woken::TimedOut, None);
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Wakes every idle task with `Shutdown`, so keep-alive connections close.
    pub(super) fn wake_idle(&mut self) {
        let idle: Vec<TaskKey> = self
            .waits
            .iter()
            .enumerate()
            .filter(|(_, w)| w.state == Some(State::ClientIdle))
            .map(|(slot, w)| TaskKey {
                slot: slot as u32,
                generation: w.generation,
            })
            .collect();
        for task in idle {
            self.wake(task, Woken::Shutdown, None);
        }
    }

    /// The key a new task in `slot` gets.
    pub(super) fn task_in(&mut self, slot: usize) -> TaskKey {
        if self.waits.len() <= slot {
            self.waits.resize_with(slot + 1, Wait::default);
        }
        TaskKey {
            slot: slot as u32,
            generation: self.waits[slot].generation,
        }
    }

    /// Retires a finished task's slot: late wake-ups for it are ignored from now on.
    pub(super) fn retire(&mut self, slot: usize) {
        let wait = &mut self.waits[slot];
        wait.generation = wait.generation.wrapping_add(1);
        wait.state = None;
        wait.last = None;
        wait.on = None;
        wait.outcome = None;
    }

    /// The state of the wait `slot`'s task last came out of.
    pub(super) fn last_wait(&self, slot: usize) -> Option<State> {
        self.waits.get(slot).and_then(|w| w.last)
    }
}

impl Gauges {
    fn count_wait(&self, state: State, begins: bool) {
        let gauge = &self.waiting[state as usize];
        if begins {
            gauge.fetch_add(1, Ordering::Relaxed);
        } else {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Blocks in poll(2) for one descriptor: the wait of a socket used outside a task.
fn poll_fd(fd: BorrowedFd<'_>, interest: Interest, deadline: Option<Instant>) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let flags = if interest.is_writable() {
        PollFlags::OUT
    } else {
        PollFlags::IN
    };
    let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
    loop {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Err(io::ErrorKind::TimedOut.into()),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
