//! A condition variable that tasks can wait on without blocking their worker: a request following a
//! cache entry another request is writing waits here in [`State::Entry`], and the writer's progress
//! wakes it on whichever worker it runs. Threads that are not workers (background revalidation,
//! tests) wait on an ordinary `Condvar`.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::reactor::{self, State, TaskWaker};

/// Waiting threads and tasks, woken together.
#[derive(Default)]
pub struct Signal {
    threads: Condvar,
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
            return self
                .threads
                .wait_timeout(guard, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
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
        self.threads.notify_all();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.wake();
        }
    }
}
