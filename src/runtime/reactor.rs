//! The workers' event loop: each worker owns one poller (mio, edge-triggered epoll) and advances many
//! connections on it, so no peer can hold a worker by being slow.
//!
//! A connection's life on a worker is a *task*: a stackful coroutine (see `task`) that
//! runs the ordinary request code until that code would wait on a peer. There a [`crate::net::Socket`]
//! calls [`wait_fd`] (a [`super::signal::Signal`], for a cache entry being written, and a name
//! lookup call [`park_until`]): the task records what it waits for, in which [`State`], and until
//! when, and yields; the worker runs other tasks and resumes this one when its socket is ready, its
//! deadline passes, or another thread wakes it (the writer it follows made progress, its lookup
//! came back). The task's stack holds the request's progress, so every phase of the request path
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
//! Not drawn: a TLS handshake and the first bytes inside an answered CONNECT wait in ClientRead under
//! the head deadline; a name lookup waits in Resolve; a cache file being opened, read, written or
//! renamed by a disk thread (a hit not in the memory tier, a miss being stored) waits in Disk; on
//! shutdown every ClientIdle wait ends at once.
//!
//! Each state has its own deadline: idle, head (whole head), client (each body read and each write's
//! progress), origin (connect, each read and write, and the total for interim 1xx responses), and the
//! collapsed-miss wait. A state that ends by its deadline gets `TimedOut` from the wait, and the
//! request code answers as it always did (408, 504, or a close).
//!
//! Sockets stay registered for their whole life (edge-triggered, one token each; read interest, and
//! write interest from the first wait for room to write), so a request costs no `epoll_ctl`, and a pooled origin connection that serves another
//! task on the same worker only changes owner. A wait comes after a read or write said
//! `WouldBlock`, or, for a keep-alive client's next request, when the socket's readiness bit says
//! nothing arrived since its last read came back short (see `waits`); either way the edge for the
//! next bytes is still to come, so no readiness is lost.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{Events, Poll, Registry, Token, Waker};

use super::lock::HELD_ACROSS_YIELD;
use super::task::{self, Resumed, Running, Task, TaskStack};
use crate::net::Shutdown;
use waits::{Current, Message, TaskKey, with_current};
pub use waits::{Registration, YIELD_EVERY, YieldBudget, park_until, wait_fd, yield_now};

mod waits;

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
    /// A cache file opened, read or written by a disk thread (`super::blocking`).
    Disk,
}

impl State {
    pub const ALL: [State; 10] = [
        State::ClientIdle,
        State::ClientHead,
        State::ClientRead,
        State::ClientWrite,
        State::Resolve,
        State::OriginConnect,
        State::OriginWrite,
        State::OriginRead,
        State::Entry,
        State::Disk,
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
            State::Disk => "disk",
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
    /// The most bytes of stack any finished task's stack had touched.
    stack_high_water: AtomicUsize,
}

impl Gauges {
    pub fn waiting(&self, state: State) -> usize {
        self.waiting[state.index()].load(Ordering::Relaxed)
    }

    /// Connections the worker holds, waiting or not.
    pub fn tasks(&self) -> usize {
        self.tasks.load(Ordering::Relaxed)
    }

    /// The deepest stack (bytes touched) of any task that has finished on this worker.
    pub fn stack_high_water(&self) -> usize {
        self.stack_high_water.load(Ordering::Relaxed)
    }
}

/// Bytes of stack per task (1 MiB). The deepest task the integration tests reach touches 116 KiB in
/// a debug build (interception: a TLS handshake and minting a leaf; 142 tests of proxy, intercept,
/// collapse, tls, browser, cache, hostile, serve, parent, ranges, pipelining), release builds less.
/// 1 MiB is a margin of about 8, kept wide because an overflow ends the process. Only the pages a
/// task touches become resident, the rest is address space; finished stacks are kept for the next
/// connection.
pub const STACK_BYTES: usize = 1024 * 1024;
/// Finished task stacks kept for reuse.
pub const SPARE_STACKS: usize = 64;
/// One finished task in this many has its stack's depth counted (see `Tasks::resume`).
const STACK_SAMPLE: u64 = 16;
const WAKER: Token = Token(usize::MAX);

/// What other threads use to reach a worker: wake-ups of its tasks, and its poller.
pub struct Remote {
    waker: Arc<Waker>,
    registry: Arc<Registry>,
    messages: Sender<Message>,
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

    /// Whether the worker sleeps in `poll` now: something queued for it then costs a wake-up.
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed)
    }

    /// The worker's waker, for the shutdown flag to wake it.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn send(&self, message: Message) {
        if self.messages.send(message).is_ok() {
            self.nudge();
        }
    }
}

/// A way to wake one waiting task from any thread (the writer of a cache entry, for its readers).
pub struct TaskWaker {
    remote: Arc<Remote>,
    key: TaskKey,
}

impl TaskWaker {
    pub fn wake(&self) {
        self.remote.send(Message::Wake(self.key));
    }
}

/// The waker of the running task, if the caller runs in one.
pub fn current_task() -> Option<TaskWaker> {
    let (remote, key) = waits::running()?;
    Some(TaskWaker { remote, key })
}

/// The body of a task.
pub type Job = Box<dyn FnOnce() + Send>;

/// One worker's poller and tasks.
pub struct Reactor {
    poll: Poll,
    remote: Arc<Remote>,
    messages: Receiver<Message>,
    /// This worker's number, for the overflow message.
    worker: usize,
}

/// The tasks of a running worker. Made on the worker's thread (in [`Reactor::run`]): a task is not
/// `Send` (its stack holds whatever its job holds), and never leaves that thread.
struct Tasks {
    remote: Arc<Remote>,
    worker: usize,
    tasks: Vec<Option<Task>>,
    free: Vec<usize>,
    spare: Vec<TaskStack>,
    /// Tasks that have finished, for sampling their stacks' depth.
    ended: u64,
}

static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

impl Reactor {
    pub fn new() -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let registry = Arc::new(poll.registry().try_clone()?);
        let (messages_tx, messages) = crossbeam_channel::unbounded();
        Ok(Reactor {
            poll,
            remote: Arc::new(Remote {
                waker,
                registry,
                messages: messages_tx,
                sleeping: AtomicBool::new(false),
                gauges: Arc::default(),
            }),
            messages,
            worker: NEXT_WORKER.fetch_add(1, Ordering::Relaxed),
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
        if !task::install_overflow_handler() {
            log::warn!(
                "worker {} has no alternate signal stack: a task that overflows its stack ends the process without a message",
                self.worker
            );
        }
        waits::install(Some(Current::new(
            self.worker,
            Arc::clone(&self.remote.registry),
            Arc::clone(&self.remote),
        )));
        let mut tasks = Tasks {
            remote: Arc::clone(&self.remote),
            worker: self.worker,
            tasks: Vec::new(),
            free: Vec::new(),
            spare: Vec::new(),
            ended: 0,
        };
        let mut events = Events::with_capacity(256);
        let mut inbox_open = true;
        let mut shut = false;
        loop {
            while inbox_open {
                match inbox.try_recv() {
                    Ok(item) => tasks.spawn(start(item)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => inbox_open = false,
                }
            }
            while let Ok(message) = self.messages.try_recv() {
                with_current(|c| c.on_message(message));
            }
            if !shut && shutdown.is_requested() {
                shut = true;
                with_current(Current::wake_idle);
            }
            // Only the tasks ready now: one that yields to be fair goes to the back and runs
            // after the next poll, so the others' readiness is collected meanwhile.
            let ready = with_current(|c| c.runnable.len());
            for _ in 0..ready {
                match with_current(|c| c.runnable.pop_front()) {
                    Some(key) => tasks.resume(key),
                    None => break,
                }
            }
            if !inbox_open && self.remote.gauges.tasks() == 0 {
                break;
            }
            let timeout = with_current(|c| c.next_deadline())
                .map(|at| at.saturating_duration_since(Instant::now()));
            self.remote.sleeping.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            // Anything queued before the flag was seen gets no wake-up: look once more.
            let runnable = with_current(|c| !c.runnable.is_empty());
            let timeout = if inbox.is_empty() && self.messages.is_empty() && !runnable {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.remote.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = polled
                && e.kind() != io::ErrorKind::Interrupted
            {
                // Never seen in practice (epoll_wait fails only on bad arguments); the tasks must
                // not be dropped mid-way, so keep the loop and try again.
                log::error!("worker poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            with_current(|c| {
                for event in events.iter() {
                    if event.token() != WAKER {
                        c.on_event(event);
                    }
                }
                c.expire_timers(Instant::now());
            });
        }
        waits::install(None);
    }
}

#[cfg(test)]
thread_local! {
    /// Panics `run_job` logged on this thread.
    static PANICS_LOGGED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A task's body: runs `job`, and logs a panic that escapes it instead of letting it end the worker.
///
/// A task dropped unfinished (its worker is going away) is unwound by corosensei with a payload of
/// its own (`corosensei::unwind::ForcedUnwind`, a private type) that corosensei must catch again at
/// the task's root, or it aborts; so a payload that is not a panic message (`String` or `&str`,
/// what `panic!` raises) goes on unwinding, unlogged.
fn run_job(job: Job) {
    let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) else {
        return;
    };
    let message = match panic.downcast_ref::<String>() {
        Some(message) => message.as_str(),
        None => match panic.downcast_ref::<&str>() {
            Some(message) => message,
            None => std::panic::resume_unwind(panic),
        },
    };
    if message.contains(HELD_ACROSS_YIELD) {
        // A debug build's check (see `lock`): a bug that would hang a worker in production, so no
        // test may pass over it.
        eprintln!("porter: {message}; aborting");
        std::process::abort();
    }
    #[cfg(test)]
    PANICS_LOGGED.with(|logged| logged.set(logged.get() + 1));
    log::error!("a connection's task panicked; the connection is closed");
}

impl Tasks {
    fn spawn(&mut self, job: Job) {
        let body = move || run_job(job);
        let stack = match self.spare.pop() {
            Some(stack) => stack,
            // Out of memory or of mappings (vm.max_map_count): refuse this connection (dropping
            // the job closes it), not the worker.
            None => match TaskStack::new(STACK_BYTES) {
                Ok(stack) => stack,
                Err(e) => {
                    log::error!(
                        "no stack for a new connection's task ({e}); the connection is closed"
                    );
                    return;
                }
            },
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.tasks.push(None);
            self.tasks.len() - 1
        });
        self.tasks[slot] = Some(Task::new(stack, body));
        self.remote.gauges.tasks.fetch_add(1, Ordering::Relaxed);
        let key = with_current(|c| c.task_in(slot));
        self.resume(key);
    }

    fn resume(&mut self, key: TaskKey) {
        let slot = key.slot as usize;
        // A key queued for a task that has since ended must not resume the slot's next task.
        if with_current(|c| c.task_in(slot)) != key {
            return;
        }
        let Some(task) = self.tasks.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let last_wait = with_current(|c| {
            c.running = Some(key);
            c.last_wait(slot)
        });
        let running = Running::new(
            self.worker,
            slot,
            last_wait.map_or("start", State::as_str),
            STACK_BYTES,
        );
        // The task catches its own panics, and a stack overflow ends the process (see `task`):
        // a resume comes back with the task waiting or finished.
        let resumed = task.resume(running);
        with_current(|c| c.running = None);
        if resumed == Resumed::Finished {
            let task = self.tasks[slot].take().expect("the task just ran");
            let stack = task.into_stack();
            // mincore(2) costs 1 to 5 us here, too much for every connection: a reused stack
            // keeps its touched pages, so sampling loses little. A stack about to be unmapped is
            // always counted, and debug builds (the tests) count every one.
            let keep = self.spare.len() < SPARE_STACKS;
            if cfg!(debug_assertions) || !keep || self.ended.is_multiple_of(STACK_SAMPLE) {
                self.remote
                    .gauges
                    .stack_high_water
                    .fetch_max(stack.touched_bytes(), Ordering::Relaxed);
            }
            self.ended = self.ended.wrapping_add(1);
            if keep {
                self.spare.push(stack);
            }
            with_current(|c| c.retire(slot));
            self.free.push(slot);
            self.remote.gauges.tasks.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The environment variable that makes a debug build's task overflow its stack as soon as its
/// first wait ends: the test of what an overflow does goes through the real binary, and the
/// message then names a real state.
#[cfg(debug_assertions)]
pub const OVERFLOW_ON_PURPOSE: &str = "PORTER_DEBUG_TASK_STACK_OVERFLOW";

#[cfg(debug_assertions)]
fn overflow_on_purpose() {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os(OVERFLOW_ON_PURPOSE).is_some()) {
        return;
    }
    /// Recursion the optimiser cannot turn into a loop or fold away.
    #[allow(unconditional_recursion)]
    fn deeper(depth: usize) -> usize {
        let frame = std::hint::black_box([depth as u8; 1024]);
        std::hint::black_box(deeper(depth + 1)) + usize::from(frame[depth % 1024])
    }
    std::hint::black_box(deeper(0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Side, Socket};
    use crate::runtime::{Mutex, Signal};
    use mio::Interest;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

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
            // Long enough that the other task is served first on any machine.
            silent
                .set_read_timeout(Some(Duration::from_secs(3)))
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

    #[test]
    fn a_disk_job_does_not_hold_the_worker_its_task_waits_in_state_disk_until_a_deadline() {
        let shutdown = Shutdown::new();
        let worker = TestWorker::start(&shutdown);
        let pool = Arc::new(crate::runtime::blocking::Pool::new("test-disk", 1).unwrap());
        let slow_pool = Arc::clone(&pool);
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<String>();
        let (done, done_tx_2) = (done_tx.clone(), done_tx.clone());
        worker.send(Box::new(move || {
            let answer = pool.run(Duration::from_secs(10), move || {
                go_rx.recv_timeout(Duration::from_secs(10)).is_ok()
            });
            done.send(format!("disk: {answer:?}")).unwrap();
        }));
        let (mut talking, mut talking_peer) = pair();
        worker.send(Box::new(move || {
            let mut buf = [0u8; 5];
            talking.read_exact(&mut buf).unwrap();
            talking.write_all(&buf).unwrap();
            done_tx.send("talking answered".into()).unwrap();
        }));
        talking_peer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        talking_peer.write_all(b"hello").unwrap();
        talking_peer.read_exact(&mut [0u8; 5]).unwrap();
        let first = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(first, "talking answered", "served while the disk job runs");
        assert_eq!(worker.remote.gauges().waiting(State::Disk), 1);
        go_tx.send(()).unwrap();
        let second = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(second, "disk: Ok(true)");
        assert_eq!(worker.remote.gauges().waiting(State::Disk), 0);
        // A job slower than its deadline: the task goes on with TimedOut, the job runs to its end.
        let (slow_tx, slow_rx) = crossbeam_channel::bounded::<()>(1);
        let (pool, done) = (Arc::clone(&slow_pool), done_tx_2);
        worker.send(Box::new(move || {
            let answer = pool.run(Duration::from_millis(50), move || {
                let _ = slow_rx.recv_timeout(Duration::from_secs(10));
            });
            done.send(format!("slow: {answer:?}")).unwrap();
        }));
        let third = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(third, "slow: Err(TimedOut)");
        drop(slow_tx);
        shutdown.request();
        worker.finish();
    }

    fn panics_logged() -> usize {
        PANICS_LOGGED.with(std::cell::Cell::get)
    }

    /// The bug: the body's catch_unwind caught corosensei's own unwinding of a task dropped
    /// unfinished and logged it as a panic (and corosensei, not getting its payload back at the
    /// task's root, would abort). A real panic is still caught and logged.
    #[test]
    fn regression_dropping_an_unfinished_task_is_not_logged_as_a_panic() {
        let held = Arc::new(());
        let inside = Arc::clone(&held);
        let before = panics_logged();
        let mut unfinished = Task::new(TaskStack::new(64 * 1024).unwrap(), move || {
            run_job(Box::new(move || {
                let _mine = inside;
                task::suspend();
            }))
        });
        assert_eq!(unfinished.resume(Running::default()), Resumed::Yielded);
        drop(unfinished);
        assert_eq!(Arc::strong_count(&held), 1, "the task's destructors ran");
        assert_eq!(panics_logged(), before, "a forced unwind is no panic");

        let mut panicking = Task::new(TaskStack::new(64 * 1024).unwrap(), || {
            run_job(Box::new(|| panic!("a bug in a connection")))
        });
        assert_eq!(panicking.resume(Running::default()), Resumed::Finished);
        assert_eq!(panics_logged(), before + 1);
    }
}
