//! A condition variable that tasks can wait on without blocking their worker: a request following a
//! cache entry another request is writing waits here in [`State::Entry`], and the writer's progress
//! wakes it on whichever worker it runs. Threads that are not workers (background revalidation,
//! tests) wait on an ordinary `Condvar`.

use std::sync::Condvar;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::lock::{Mutex, MutexGuard};
use super::reactor::{self, State, TaskWaker};

/// Waiting threads and tasks, woken together.
#[derive(Default)]
pub struct Signal {
    threads: Condvar,
    /// Threads in `threads.wait_timeout`: `Condvar::notify_all` makes a system call even when
    /// nobody waits, and nearly every wait here is a task's.
    waiting_threads: AtomicUsize,
    tasks: Mutex<Vec<TaskWaker>>,
}

impl Signal {
    /// Releases `guard` (of `mutex`), waits until notified or `timeout` passes, and takes the lock
    /// again. Like `Condvar::wait_timeout`, it may return early: callers check their condition.
    pub fn wait_timeout<'a, T>(
        &self,
        mutex: &'a Mutex<T>,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> MutexGuard<'a, T> {
        let Some(waker) = reactor::current_task() else {
            // Counted while `guard` is held, for the same reason the tasks are listed under it.
            self.waiting_threads.fetch_add(1, Ordering::SeqCst);
            let guard = self
                .threads
                .wait_timeout(guard.into_std(), timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.waiting_threads.fetch_sub(1, Ordering::SeqCst);
            return MutexGuard::from_std(guard);
        };
        // Listed before the lock is released: a notifier changes the state under that lock, so
        // it either runs before this wait began (the caller saw its change) or finds the waker.
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
        drop(guard);
        reactor::park_until(State::Entry, Instant::now() + timeout);
        mutex.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        if self.waiting_threads.load(Ordering::SeqCst) > 0 {
            self.threads.notify_all();
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A thread (not a task) waiting with a long timeout is woken by the notify, not the timeout:
    /// the count of waiting threads must see it.
    #[test]
    fn a_waiting_thread_is_woken_by_notify_all() {
        let shared = Arc::new((Mutex::new(false), Signal::default()));
        let waiter = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let (flag, signal) = &*shared;
                let started = Instant::now();
                let mut set = flag.lock().unwrap();
                while !*set && started.elapsed() < Duration::from_secs(60) {
                    set = signal.wait_timeout(flag, set, Duration::from_secs(60));
                }
                started.elapsed()
            })
        };
        // Wait until the thread is waiting, so the notify cannot come before it.
        let (flag, signal) = &*shared;
        let deadline = Instant::now() + Duration::from_secs(10);
        while signal.waiting_threads.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        *flag.lock().unwrap() = true;
        signal.notify_all();
        let waited = waiter.join().unwrap();
        assert!(
            waited < Duration::from_secs(30),
            "woken only after {waited:?}"
        );
        assert_eq!(signal.waiting_threads.load(Ordering::SeqCst), 0);
    }
}
