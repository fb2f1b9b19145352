//! The workers' event loop: each worker owns one poller (mio, edge-triggered epoll) and advances many
//! connections on it, so no peer can hold a worker by being slow.
//!
//! A connection's life on a worker is a *task*: a stackful coroutine (the `generator` crate) that
//! runs the ordinary request code until that code would wait on a peer. There a [`crate::net::Socket`]
//! (or a [`super::signal::Signal`] for a cache entry being written) calls [`wait_fd`]: the task
//! records what it waits for, in which [`State`], and until when, and yields; the worker runs other
//! tasks and resumes this one when its socket is ready, its deadline passes, or the writer it follows
//! makes progress. The task's stack holds the request's progress, so every phase of the request path
//! (collapsed misses, ranges, interception, parents) is a state machine without being rewritten as
//! one.
//!
//! ```text
//!  accept ─> ClientIdle ◀───────────────────────────────────────────────┐  idle timeout: close
//!              │ bytes                                                  │
//!              ▼                                                        │
//!            ClientHead ── head timeout: close                          │
//!              │ whole head                                             │
//!              ├─ hit ─────────────────────────────────────> ClientWrite ┤  client timeout: close
//!              ├─ miss ─> Resolve ─> OriginConnect ─> OriginWrite ⇄ ClientRead (request body)
//!              │                                          │                 │
//!              │                                          ▼                 │
//!              │                        OriginRead ⇄ ClientWrite ───────────┤  (relay, stored as
//!              │                        (each read; 1xx + head: one budget) │   it passes)
//!              └─ collapsed miss ─> Entry ⇄ ClientWrite ────────────────────┘
//!                                   (the writer's progress)
//! ```
//!
//! Each state has its own deadline: idle, head (whole head), client (each body read and each write's
//! progress), origin (connect, each read and write, and the total for interim 1xx responses), and the
//! collapsed-miss wait. A state that ends by its deadline gets `TimedOut` from the wait, and the
//! request code answers as it always did (408, 504, or a close).
//!
//! Sockets stay registered for their whole life (read and write interest, edge-triggered), so a
//! request costs no `epoll_ctl`; a wait comes only after a read or write said `WouldBlock`, and
//! after that an edge is guaranteed when the socket becomes ready, so no readiness is lost.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use generator::{Generator, Gn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::Shutdown;

/// What a task waits for. Each has its own deadline, and /metrics counts the tasks in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Between requests on a keep-alive connection.
    ClientIdle,
    /// A request head has begun but is not whole.
    ClientHead,
    /// A request body, or the first bytes inside a tunnel.
    ClientRead,
    /// A response the client is slow to take.
    ClientWrite,
    /// The addresses of an origin or parent, from a resolver thread.
    Resolve,
    /// A TCP connection to an origin or parent being made.
    OriginConnect,
    /// A request the origin is slow to take.
    OriginWrite,
    /// The origin's response head or body.
    OriginRead,
    /// The next bytes of a cache entry another request is writing.
    Entry,
}

impl State {
    pub const ALL: [State; 9] = [
        State::ClientIdle,
        State::ClientHead,
        State::ClientRead,
        State::ClientWrite,
        State::Resolve,
        State::OriginConnect,
        State::OriginWrite,
        State::OriginRead,
        State::Entry,
    ];

    /// The label in /metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::ClientIdle => "client_idle",
            State::ClientHead => "client_head",
            State::ClientRead => "client_read",
            State::ClientWrite => "client_write",
            State::Resolve => "resolve",
            State::OriginConnect => "origin_connect",
            State::OriginWrite => "origin_write",
            State::OriginRead => "origin_read",
            State::Entry => "entry",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How many tasks wait in each state, on one worker (summed over workers for /metrics).
#[derive(Default)]
pub struct Gauges {
    waiting: [AtomicUsize; State::ALL.len()],
    tasks: AtomicUsize,
}

impl Gauges {
    pub fn waiting(&self, state: State) -> usize {
        self.waiting[state.index()].load(Ordering::Relaxed)
    }

    /// Connections the worker holds, waiting or not.
    pub fn tasks(&self) -> usize {
        self.tasks.load(Ordering::Relaxed)
    }
}

/// Words of stack per task (1 MiB): a TLS handshake and certificate minting run on it. Only the
/// pages a task touches become resident; finished stacks are kept for the next connection.
const STACK_WORDS: usize = 128 * 1024;
/// Finished task stacks kept for reuse.
const SPARE_STACKS: usize = 64;
const WAKER: Token = Token(usize::MAX);

/// One task's identity: its slot, and which use of the slot (a stale wake-up must not reach the
/// next connection in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKey {
    slot: u32,
    generation: u32,
}

impl TaskKey {
    fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.slot as usize)
    }

    fn from_token(token: Token) -> TaskKey {
        TaskKey {
            slot: token.0 as u32,
            generation: (token.0 >> 32) as u32,
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    Ready,
    TimedOut,
    /// The server is shutting down and the task was idle.
    Shutdown,
}

/// A task's current wait.
#[derive(Default)]
struct Wait {
    generation: u32,
    /// `None` when the task is not waiting.
    state: Option<State>,
    /// The readiness a socket wait waits for; `None` for other waits, which socket events never end.
    interest: Option<Interest>,
    timer: Option<(Instant, u64)>,
    outcome: Option<Woken>,
    /// A socket of the task became ready while it was running (not waiting): its next wait returns
    /// at once, so the edge is not lost. This is what lets a task wait for a keep-alive client's
    /// next request without first reading to see `WouldBlock`.
    ready_while_running: bool,
}

/// The worker's state that its tasks reach through the thread-local: waits, timers, the run queue.
struct Current {
    worker: usize,
    registry: Arc<Registry>,
    remote: Arc<Remote>,
    gauges: Arc<Gauges>,
    running: Option<TaskKey>,
    waits: Vec<Wait>,
    timers: BTreeMap<(Instant, u64), TaskKey>,
    next_timer: u64,
    runnable: VecDeque<TaskKey>,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// What other threads use to reach a worker: new connections and wake-ups of its tasks.
pub struct Remote {
    waker: Arc<Waker>,
    wakes: Sender<TaskKey>,
    /// Set while the worker sleeps in `poll`; senders only pay for a wake-up then.
    sleeping: AtomicBool,
    gauges: Arc<Gauges>,
}

impl Remote {
    /// Wakes the worker if it sleeps (after something was queued for it).
    pub fn nudge(&self) {
        // The queued item must be visible before the flag is read, or this thread could read
        // "awake" while the worker, having found the queue empty, goes to sleep (a store-load
        // reordering the channel's own orderings allow).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    pub fn gauges(&self) -> &Arc<Gauges> {
        &self.gauges
    }

    /// The worker's waker, for the shutdown flag to wake it.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }
}

/// A way to wake one waiting task from any thread (the writer of a cache entry, for its readers).
pub struct TaskWaker {
    remote: Arc<Remote>,
    key: TaskKey,
}

impl TaskWaker {
    pub fn wake(&self) {
        if self.remote.wakes.send(self.key).is_ok() {
            self.remote.nudge();
        }
    }
}

/// The waker of the running task, if the caller runs in one.
pub fn current_task() -> Option<TaskWaker> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let c = c.as_ref()?;
        Some(TaskWaker {
            remote: Arc::clone(&c.remote),
            key: c.running?,
        })
    })
}

/// Whether the caller runs in a task (so waits yield) rather than on a thread of its own.
pub fn in_task() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|c| c.running.is_some()))
}

/// Where a socket is registered: which worker's poller, under which task's token.
#[derive(Default)]
pub struct Registration {
    at: Option<Registered>,
}

struct Registered {
    registry: Arc<Registry>,
    worker: usize,
    key: TaskKey,
}

impl Registration {
    /// Takes the socket out of the poller it is in, before it moves to a thread that is no worker (a
    /// tunnel) and would otherwise keep waking a task here.
    pub fn release(&mut self, fd: RawFd) {
        if let Some(at) = self.at.take() {
            let _ = at.registry.deregister(&mut SourceFd(&fd));
        }
    }

    /// Registers `fd` with the current worker under the running task, if it is not already.
    fn ensure(&mut self, fd: RawFd, current: &Current, key: TaskKey) -> io::Result<()> {
        match &self.at {
            Some(at) if at.worker == current.worker && at.key == key => return Ok(()),
            Some(at) if at.worker == current.worker => {
                current
                    .registry
                    .reregister(&mut SourceFd(&fd), key.token(), both())?;
            }
            Some(_) | None => {
                // A pooled origin connection last used on another worker leaves that poller first.
                self.release(fd);
                current
                    .registry
                    .register(&mut SourceFd(&fd), key.token(), both())?;
            }
        }
        self.at = Some(Registered {
            registry: Arc::clone(&current.registry),
            worker: current.worker,
            key,
        });
        Ok(())
    }
}

fn both() -> Interest {
    Interest::READABLE | Interest::WRITABLE
}

/// Waits until `fd` is ready for `interest` or `deadline` passes (`TimedOut`). In a task it yields to
/// the worker; on any other thread it blocks in poll(2). Call it only after the socket said
/// `WouldBlock`.
pub fn wait_fd(
    fd: BorrowedFd<'_>,
    registration: &mut Registration,
    interest: Interest,
    deadline: Option<Instant>,
    state: State,
) -> io::Result<()> {
    let registered = CURRENT.with(|c| {
        let c = c.borrow();
        match c.as_ref() {
            Some(current) => match current.running {
                Some(key) => registration
                    .ensure(fd.as_raw_fd(), current, key)
                    .map(|()| true),
                None => Ok(false),
            },
            None => Ok(false),
        }
    })?;
    if !registered {
        return poll_fd(fd, interest, deadline);
    }
    if with_current(Current::take_early_readiness) {
        return Ok(());
    }
    match park(state, deadline, Some(interest)) {
        Woken::Ready => Ok(()),
        Woken::TimedOut => Err(timed_out(state)),
        Woken::Shutdown => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server is shutting down",
        )),
    }
}

/// Yields the running task until it is woken or `deadline` passes. Outside a task, sleeps until
/// the deadline (there is nothing to be woken by).
pub fn park_until(state: State, deadline: Instant) -> bool {
    if in_task() {
        park(state, Some(deadline), None) == Woken::Ready
    } else {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        false
    }
}

fn timed_out(state: State) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("timed out waiting ({})", state.as_str()),
    )
}

/// Records the running task's wait and yields; returns how the wait ended.
fn park(state: State, deadline: Option<Instant>, interest: Option<Interest>) -> Woken {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let c = c.as_mut().expect("park runs in a task");
        let key = c.running.expect("park runs in a task");
        let timer = deadline.map(|at| {
            c.next_timer += 1;
            let id = (at, c.next_timer);
            c.timers.insert(id, key);
            id
        });
        let wait = &mut c.waits[key.slot as usize];
        wait.state = Some(state);
        wait.interest = interest;
        wait.timer = timer;
        wait.outcome = None;
        c.gauges.waiting[state.index()].fetch_add(1, Ordering::Relaxed);
    });
    // The scoped API would need its yielder passed down to every socket read in the request code;
    // the free function reaches the running generator through the thread, which is what lets a
    // socket deep in that code yield. (Deprecated upstream for that reason, not for a defect.)
    #[allow(deprecated)]
    generator::yield_with(());
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let c = c.as_mut().expect("a task resumes on its worker");
        let key = c.running.expect("a task resumes on its worker");
        c.waits[key.slot as usize]
            .outcome
            .take()
            .unwrap_or(Woken::Ready)
    })
}

impl Current {
    /// A socket event: it ends a socket wait it answers (a write-space edge after an ACK must not
    /// wake a task waiting for the next request), and is remembered by a task that is running.
    fn wake_for_event(&mut self, event: &mio::event::Event) {
        let key = TaskKey::from_token(event.token());
        let Some(wait) = self.waits.get_mut(key.slot as usize) else {
            return;
        };
        if wait.generation != key.generation {
            return;
        }
        let answers = match wait.interest {
            _ if event.is_error() => true,
            Some(i) if i.is_readable() => event.is_readable() || event.is_read_closed(),
            Some(_) => event.is_writable() || event.is_write_closed(),
            None => false,
        };
        if wait.state.is_none() {
            wait.ready_while_running = true;
        } else if answers {
            self.wake(key, Woken::Ready, None);
        }
    }

    /// A wake-up from another thread: it ends only the waits another thread can end (an entry's
    /// progress, a lookup's answer), never a socket wait.
    fn wake_remote(&mut self, key: TaskKey) {
        for state in [State::Entry, State::Resolve] {
            self.wake(key, Woken::Ready, Some(state));
        }
    }

    /// Ends `key`'s wait with `outcome` and queues it to run, if it is waiting (and, with `only`,
    /// waiting in that state).
    fn wake(&mut self, key: TaskKey, outcome: Woken, only: Option<State>) {
        let Some(wait) = self.waits.get_mut(key.slot as usize) else {
            return;
        };
        if wait.generation != key.generation {
            return;
        }
        let Some(state) = wait.state else { return };
        if only.is_some_and(|s| s != state) {
            return;
        }
        wait.state = None;
        wait.interest = None;
        wait.outcome = Some(outcome);
        if let Some(timer) = wait.timer.take() {
            self.timers.remove(&timer);
        }
        self.gauges.waiting[state.index()].fetch_sub(1, Ordering::Relaxed);
        self.runnable.push_back(key);
    }

    /// Whether the running task had a socket event while it ran (and forgets it).
    fn take_early_readiness(&mut self) -> bool {
        let Some(key) = self.running else {
            return false;
        };
        std::mem::take(&mut self.waits[key.slot as usize].ready_while_running)
    }

    fn expire_timers(&mut self, now: Instant) {
        while let Some((&(at, id), &key)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            if let Some(wait) = self.waits.get_mut(key.slot as usize) {
                wait.timer = None;
            }
            self.wake(key, Woken::TimedOut, None);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Wakes every idle task with `Shutdown`, so keep-alive connections close.
    fn wake_idle(&mut self) {
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
        for key in idle {
            self.wake(key, Woken::Shutdown, None);
        }
    }
}

/// The body of a task.
pub type Job = Box<dyn FnOnce() + Send>;

/// One worker's poller and tasks.
pub struct Reactor {
    poll: Poll,
    remote: Arc<Remote>,
    wakes: Receiver<TaskKey>,
    tasks: Vec<Option<Generator<'static, (), ()>>>,
    free: Vec<usize>,
    spare: Vec<Generator<'static, (), ()>>,
}

static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

impl Reactor {
    pub fn new() -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (wakes_tx, wakes) = crossbeam_channel::unbounded();
        Ok(Reactor {
            poll,
            remote: Arc::new(Remote {
                waker,
                wakes: wakes_tx,
                sleeping: AtomicBool::new(false),
                gauges: Arc::default(),
            }),
            wakes,
            tasks: Vec::new(),
            free: Vec::new(),
            spare: Vec::new(),
        })
    }

    pub fn remote(&self) -> Arc<Remote> {
        Arc::clone(&self.remote)
    }

    /// Runs tasks made from what `inbox` brings until it is closed and every task has ended. On
    /// shutdown, idle tasks are woken so they can close.
    pub fn run<T>(
        mut self,
        inbox: &Receiver<T>,
        shutdown: &Shutdown,
        mut start: impl FnMut(T) -> Job,
    ) {
        let registry = match self.poll.registry().try_clone() {
            Ok(registry) => Arc::new(registry),
            Err(e) => {
                log::error!("worker cannot share its poller: {e}");
                return;
            }
        };
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Current {
                worker: NEXT_WORKER.fetch_add(1, Ordering::Relaxed),
                registry,
                remote: Arc::clone(&self.remote),
                gauges: Arc::clone(&self.remote.gauges),
                running: None,
                waits: Vec::new(),
                timers: BTreeMap::new(),
                next_timer: 0,
                runnable: VecDeque::new(),
            })
        });
        let mut events = Events::with_capacity(256);
        let mut inbox_open = true;
        let mut shut = false;
        loop {
            while inbox_open {
                match inbox.try_recv() {
                    Ok(item) => self.spawn(start(item)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => inbox_open = false,
                }
            }
            while let Ok(key) = self.wakes.try_recv() {
                with_current(|c| c.wake_remote(key));
            }
            if !shut && shutdown.is_requested() {
                shut = true;
                with_current(Current::wake_idle);
            }
            while let Some(key) = with_current(|c| c.runnable.pop_front()) {
                self.resume(key);
            }
            if !inbox_open && self.remote.gauges.tasks() == 0 {
                break;
            }
            let timeout = with_current(|c| c.next_deadline())
                .map(|at| at.saturating_duration_since(Instant::now()));
            self.remote.sleeping.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            // Anything queued before the flag was seen gets no wake-up: look once more.
            let timeout = if inbox.is_empty() && self.wakes.is_empty() {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.remote.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = polled
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("worker poll failed: {e}");
                break;
            }
            with_current(|c| {
                for event in events.iter() {
                    if event.token() != WAKER {
                        c.wake_for_event(event);
                    }
                }
                c.expire_timers(Instant::now());
            });
        }
        CURRENT.with(|c| c.borrow_mut().take());
    }

    fn spawn(&mut self, job: Job) {
        let body = move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                log::error!("a connection's task panicked; the connection is closed");
            }
        };
        let task = match self.spare.pop() {
            Some(mut task) => {
                task.init_code(body);
                task
            }
            None => Gn::<()>::new_opt(STACK_WORDS, body),
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.tasks.push(None);
            self.tasks.len() - 1
        });
        self.tasks[slot] = Some(task);
        self.remote.gauges.tasks.fetch_add(1, Ordering::Relaxed);
        let key = with_current(|c| {
            if c.waits.len() <= slot {
                c.waits.resize_with(slot + 1, Wait::default);
            }
            TaskKey {
                slot: slot as u32,
                generation: c.waits[slot].generation,
            }
        });
        self.resume(key);
    }

    fn resume(&mut self, key: TaskKey) {
        let slot = key.slot as usize;
        let Some(task) = self.tasks.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        with_current(|c| c.running = Some(key));
        task.resume();
        let done = task.is_done();
        with_current(|c| c.running = None);
        if done {
            let task = self.tasks[slot].take().expect("the task just ran");
            if self.spare.len() < SPARE_STACKS {
                self.spare.push(task);
            }
            with_current(|c| {
                let wait = &mut c.waits[slot];
                wait.generation = wait.generation.wrapping_add(1);
                wait.state = None;
                wait.outcome = None;
                wait.ready_while_running = false;
            });
            self.free.push(slot);
            self.remote.gauges.tasks.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn with_current<R>(f: impl FnOnce(&mut Current) -> R) -> R {
    CURRENT.with(|c| {
        f(c.borrow_mut()
            .as_mut()
            .expect("the worker's reactor is set"))
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Side, Signal, Socket};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;

    /// A socket pair: the worker's side (a `Socket`) and the test's peer.
    fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (Socket::new(ours, Side::Client).unwrap(), peer)
    }

    /// A reactor on its own thread, and a way to give it jobs.
    struct TestWorker {
        jobs: Sender<Job>,
        remote: Arc<Remote>,
        thread: std::thread::JoinHandle<()>,
    }

    impl TestWorker {
        fn start(shutdown: &Shutdown) -> TestWorker {
            let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
            let reactor = Reactor::new().unwrap();
            let remote = reactor.remote();
            shutdown.add_waker(remote.waker());
            let shutdown = shutdown.clone();
            let thread = std::thread::spawn(move || reactor.run(&rx, &shutdown, |job| job));
            TestWorker {
                jobs,
                remote,
                thread,
            }
        }

        fn send(&self, job: Job) {
            self.jobs.send(job).unwrap();
            self.remote.nudge();
        }

        /// Closes the inbox and waits for the worker to finish its tasks.
        fn finish(self) {
            drop(self.jobs);
            let _ = self.remote.waker().wake();
            self.thread.join().unwrap();
        }
    }

    #[test]
    fn a_task_waiting_on_a_silent_peer_does_not_hold_the_worker_and_times_out() {
        let shutdown = Shutdown::new();
        let worker = TestWorker::start(&shutdown);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<&'static str>();
        let (mut silent, _silent_peer) = pair();
        let (mut talking, mut talking_peer) = pair();
        let done = done_tx.clone();
        worker.send(Box::new(move || {
            silent
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let error = silent.read(&mut [0u8; 8]).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            done.send("silent timed out").unwrap();
        }));
        worker.send(Box::new(move || {
            talking
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 5];
            talking.read_exact(&mut buf).unwrap();
            talking.write_all(&buf).unwrap();
            done_tx.send("talking answered").unwrap();
        }));
        talking_peer.write_all(b"hello").unwrap();
        let mut echo = [0u8; 5];
        talking_peer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        talking_peer.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"hello");
        let first = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let second = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((first, second), ("talking answered", "silent timed out"));
        shutdown.request();
        worker.finish();
    }

    #[test]
    fn a_signal_wakes_a_task_from_another_thread_and_shutdown_ends_idle_waits() {
        let shutdown = Shutdown::new();
        let worker = TestWorker::start(&shutdown);
        let state = Arc::new((Mutex::new(false), Signal::default()));
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<String>();
        let (task_state, done) = (Arc::clone(&state), done_tx.clone());
        worker.send(Box::new(move || {
            let (flag, signal) = &*task_state;
            let mut set = flag.lock().unwrap();
            while !*set {
                set = signal.wait_timeout(flag, set, Duration::from_secs(10));
            }
            done.send("signalled".into()).unwrap();
        }));
        let (mut idle, _idle_peer) = pair();
        worker.send(Box::new(move || {
            let far = Instant::now() + Duration::from_secs(60);
            let woken = idle.wait(Interest::READABLE, Some(far), State::ClientIdle);
            done_tx
                .send(format!("idle: {:?}", woken.map_err(|e| e.kind())))
                .unwrap();
        }));
        // Let both tasks wait, then wake the first from this thread.
        std::thread::sleep(Duration::from_millis(100));
        *state.0.lock().unwrap() = true;
        state.1.notify_all();
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            "signalled"
        );
        shutdown.request();
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            "idle: Err(ConnectionAborted)"
        );
        worker.finish();
    }
}
