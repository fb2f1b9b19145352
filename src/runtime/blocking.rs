//! Blocking work that must not hold a worker: a small pool of threads runs it while the task that
//! asked waits in [`State::Disk`], and the worker serves its other tasks meanwhile (nginx's aio
//! threads, Squid's rock diskers and ATS's AIO threads do the same for the same reason). A file
//! system call has no non-blocking form for regular files (epoll says a file is always ready), and a
//! busy or network disk can take hundreds of milliseconds for an `openat`: on the worker that stalls
//! every connection it holds, memory hits included.
//!
//! ```text
//!  task ── Pool::run(job) ──> bounded queue ──> disk-N thread: job() ──> answer, TaskWaker::wake
//!    │                  (full: Busy)                                        │
//!    └─ park_until(Disk, deadline) <── worker's queue + eventfd ────────────┘
//!       (deadline first: TimedOut; the job still runs, its result is dropped)
//! ```
//!
//! The wake-up is the resolver threads' (`net::resolve`): the answer is put in a slot shared with
//! the task, then the task's [`super::reactor::TaskWaker`] queues it on its worker, which is woken
//! only if it sleeps. Jobs own what they touch (`'static`), so a task that stops waiting at its
//! deadline leaves nothing borrowed behind. Outside a task (background revalidation, the command
//! line, unit tests) a job runs on the calling thread, as it did before. The cache owns its pool
//! (`cache::diskio`); this module knows nothing of files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::Mutex;
use super::reactor::{self, State};

/// Threads of a pool unless configured otherwise (`--disk-threads`): jobs that may run at once.
pub const DEFAULT_THREADS: usize = 4;
/// Jobs waiting for a thread, beyond which [`Pool::run`] answers `Busy` at once.
const QUEUED_JOBS: usize = 1024;

/// Why a job gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Every thread is busy and the queue is full: the disk is far behind.
    Busy,
    /// The deadline passed first. The job still runs to its end; its result is dropped.
    TimedOut,
    /// The job panicked (logged by the pool thread).
    Panicked,
}

impl Error {
    pub fn as_str(self) -> &'static str {
        match self {
            Error::Busy => "every disk thread is busy",
            Error::TimedOut => "the disk did not answer in time",
            Error::Panicked => "a disk job panicked",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        let kind = match e {
            Error::TimedOut => std::io::ErrorKind::TimedOut,
            Error::Busy | Error::Panicked => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A pool of named threads behind a bounded queue. Dropping it ends the threads once the queue is
/// empty (they leave their `recv` loop when the last sender is gone).
pub struct Pool {
    /// `None` with 0 threads: jobs run on the thread that asks.
    queue: Option<Sender<Job>>,
}

impl Pool {
    /// Starts `threads` threads named `{name}-N`; 0 starts none, and every job then runs on the
    /// worker that asks, as Porter did before the pool.
    pub fn new(name: &str, threads: usize) -> std::io::Result<Pool> {
        if threads == 0 {
            return Ok(Pool { queue: None });
        }
        let (tx, rx) = crossbeam_channel::bounded::<Job>(QUEUED_JOBS);
        for index in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || rx.iter().for_each(|job| job()))?;
        }
        Ok(Pool { queue: Some(tx) })
    }

    /// Runs `job` on a pool thread while the calling task waits (state `disk`) at most `timeout`;
    /// outside a task, or in a pool of 0 threads, runs it here.
    pub fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (Some(queue), Some(waker)) = (&self.queue, reactor::current_task()) else {
            return Ok(job());
        };
        let answer: Arc<Mutex<Option<std::thread::Result<T>>>> = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&answer);
        let work: Job = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            if out.is_err() {
                log::error!("a disk job panicked");
            }
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
            waker.wake();
        });
        if queue.try_send(work).is_err() {
            return Err(Error::Busy);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(out) = answer.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return out.map_err(|_| Error::Panicked);
            }
            if Instant::now() >= deadline {
                return Err(Error::TimedOut);
            }
            // The wake-up cannot be lost: it is queued for this task's worker, which only reads
            // its queue once this task has yielded here.
            reactor::park_until(State::Disk, deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_task_a_job_runs_on_the_calling_thread() {
        let here = std::thread::current().id();
        let pool = Pool::new("test-disk", 2).unwrap();
        let ran_on = pool.run(Duration::from_secs(1), move || std::thread::current().id());
        assert_eq!(ran_on, Ok(here));
        let inline = Pool::new("test-disk", 0).unwrap();
        let ran_on = inline.run(Duration::from_secs(1), move || std::thread::current().id());
        assert_eq!(ran_on, Ok(here));
    }
}
