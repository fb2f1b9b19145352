//! A task: a stackful coroutine (`corosensei`) on an mmap'd stack with a guard page below it. This
//! is the crate's one module with `unsafe`, and each block says why it holds.
//!
//! Request code yields from deep inside ordinary calls (a socket read in the middle of the HTTP
//! parser), so the yield is a free function, [`suspend`], not a `Yielder` passed down through
//! every signature. It finds the running task's `Yielder` through a thread-local pointer that is
//! set only while that task's code runs on this thread: the unsafe block in `suspend`. The others
//! are `mincore(2)` for the stack's high-water mark and the overflow handler (`overflow`).
//!
//! ```text
//!  worker stack                                task stack (DefaultStack: guard page + N KiB)
//!  Task::resume ── switch ─────────────────────> body: YIELDER = &yielder; job()
//!                                                 ... Socket::read ─> wait_fd ─> suspend()
//!  (back in the loop) <────────── switch ────────  assert no lock guard; yielder.suspend(())
//!  Task::resume ── switch ─────────────────────>  YIELDER = &yielder again; return to read
//! ```
//!
//! A finished task gives its stack back ([`Task::into_stack`]) for the next connection, so a
//! connection costs no mmap. A task dropped before it finished (its worker is going away) is
//! unwound by corosensei: its destructors run, its guards are released and its sockets closed.

mod overflow;

use std::cell::Cell;
use std::ptr;

use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, CoroutineResult, Yielder};

pub use overflow::{Running, install_overflow_handler};

thread_local! {
    /// The `Yielder` of the task whose code runs on this thread now; null on the worker's own stack.
    static YIELDER: Cell<*const Yielder<(), ()>> = const { Cell::new(ptr::null()) };
}

/// A task's stack, kept between connections.
pub struct TaskStack(DefaultStack);

impl TaskStack {
    /// Maps a stack of `size` bytes (rounded up to pages) plus a guard page: two mappings.
    pub fn new(size: usize) -> std::io::Result<TaskStack> {
        DefaultStack::new(size).map(TaskStack)
    }

    /// The guard page's first address and the usable stack's `[limit, base)`.
    fn bounds(&self) -> (usize, usize, usize) {
        let guard = self.0.limit().get();
        (guard, guard + page_size(), self.0.base().get())
    }

    /// Bytes of this stack that have ever been touched (resident now), counted by `mincore(2)`
    /// without faulting anything in. A reused stack keeps its pages, so this is the deepest any
    /// task on it reached.
    pub fn touched_bytes(&self) -> usize {
        let (_, limit, base) = self.bounds();
        let page = page_size();
        let pages = (base - limit) / page;
        let mut resident = vec![0u8; pages];
        // SAFETY: `[limit, base)` is this stack's own readable and writable mapping, page-aligned
        // (corosensei maps whole pages), and `resident` has one byte per page of it, which is
        // what mincore(2) writes. mincore reads no user memory and faults nothing in.
        let ok = unsafe {
            libc::mincore(
                limit as *mut libc::c_void,
                base - limit,
                resident.as_mut_ptr(),
            )
        } == 0;
        if !ok {
            return 0;
        }
        resident.iter().filter(|&&r| r & 1 == 1).count() * page
    }
}

fn page_size() -> usize {
    rustix::param::page_size()
}

/// A running or suspended task.
pub struct Task {
    coroutine: Coroutine<(), (), (), DefaultStack>,
    /// The guard page below the stack: `[guard, guard + page)`.
    guard: usize,
}

/// How a resume ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// The task yields: it waits for something, or lets others run.
    Yielded,
    /// The task has finished; its stack can go to the next one.
    Finished,
}

impl Task {
    /// A task that runs `job` on `stack` when first resumed. `job` must not let a panic escape
    /// (the worker catches them around it): one that does goes on through [`Task::resume`].
    pub fn new(stack: TaskStack, job: impl FnOnce() + 'static) -> Task {
        let (guard, _, _) = stack.bounds();
        let coroutine = Coroutine::with_stack(stack.0, move |yielder: &Yielder<(), ()>, ()| {
            YIELDER.with(|y| y.set(yielder));
            job();
            YIELDER.with(|y| y.set(ptr::null()));
        });
        Task { coroutine, guard }
    }

    /// Runs the task until it yields or finishes. `running` names the task to the overflow
    /// handler while it runs (its guard page, its worker and the state it left).
    pub fn resume(&mut self, running: Running) -> Resumed {
        overflow::enter(running.on_stack(self.guard, self.guard + page_size()));
        let result = self.coroutine.resume(());
        overflow::leave();
        // Whatever the task left there is not to be used on the worker's stack.
        YIELDER.with(|y| y.set(ptr::null()));
        match result {
            CoroutineResult::Yield(()) => Resumed::Yielded,
            CoroutineResult::Return(()) => Resumed::Finished,
        }
    }

    /// The stack of a finished task, for the next one.
    pub fn into_stack(self) -> TaskStack {
        TaskStack(self.coroutine.into_stack())
    }
}

/// Yields the running task to its worker; returns when the worker resumes it. Asserts (debug
/// builds) that the task holds no lock guard: see `lock`.
///
/// # Panics
/// Outside a task (the worker's waits call it only for the running task).
pub fn suspend() {
    super::lock::assert_none_held();
    // A yield while this task unwinds would run other tasks with `panicking()` true on the thread
    // (their lock guards would poison locks, a second panic would abort): no drop may wait.
    debug_assert!(
        !std::thread::panicking(),
        "a task yielded while unwinding (a wait in a destructor during a panic)"
    );
    let yielder = YIELDER.with(Cell::get);
    assert!(!yielder.is_null(), "suspend runs in a task");
    // SAFETY: `YIELDER` is non-null only while the code of the task that stored it runs on this
    // thread: the task's body sets it on entry and after every return from `suspend` (below),
    // and `Task::resume` clears it whenever control comes back to the worker. So the pointer is
    // the `&Yielder` corosensei passed to the body now running further up this very stack, which
    // lives as long as the body runs, and `suspend` is called from inside that coroutine, as
    // `Yielder::suspend` requires. The task never moves to another thread between resumes.
    unsafe { &*yielder }.suspend(());
    // Back on this task's stack, possibly after other tasks ran and changed the pointer.
    YIELDER.with(|y| y.set(yielder));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `job` as a task to its end; returns its stack.
    fn run(job: impl FnOnce() + 'static) -> TaskStack {
        let mut task = Task::new(TaskStack::new(64 * 1024).unwrap(), job);
        while task.resume(Running::default()) == Resumed::Yielded {}
        task.into_stack()
    }

    #[test]
    fn a_task_yields_and_resumes_and_its_stack_is_reused() {
        let count = std::rc::Rc::new(Cell::new(0));
        let seen = std::rc::Rc::clone(&count);
        let stack = run(move || {
            for _ in 0..3 {
                seen.set(seen.get() + 1);
                suspend();
            }
        });
        assert_eq!(count.get(), 3);
        assert!(stack.touched_bytes() >= page_size());
        let mut again = Task::new(stack, suspend);
        assert_eq!(again.resume(Running::default()), Resumed::Yielded);
        assert_eq!(again.resume(Running::default()), Resumed::Finished);
        assert!(YIELDER.with(Cell::get).is_null());
    }

    #[test]
    fn dropping_an_unfinished_task_releases_what_it_holds() {
        let held = std::rc::Rc::new(());
        let inside = std::rc::Rc::clone(&held);
        let mut task = Task::new(TaskStack::new(64 * 1024).unwrap(), move || {
            let _mine = inside;
            suspend();
            unreachable!("never resumed");
        });
        assert_eq!(task.resume(Running::default()), Resumed::Yielded);
        assert_eq!(std::rc::Rc::strong_count(&held), 2);
        drop(task);
        assert_eq!(std::rc::Rc::strong_count(&held), 1);
    }

    /// The rule `lock` enforces: a guard alive at a yield fails in debug builds.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a lock guard is held across a yield")]
    fn regression_a_lock_guard_held_across_a_yield_panics() {
        let mutex = std::sync::Arc::new(crate::runtime::lock::Mutex::new(0));
        let in_task = std::sync::Arc::clone(&mutex);
        run(move || {
            let _guard = in_task.lock().unwrap();
            suspend();
        });
    }
}
