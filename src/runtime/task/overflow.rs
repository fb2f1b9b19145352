//! What happens when a task overruns its stack: it touches the guard page below it, the kernel
//! raises SIGSEGV on the worker's thread, and the handler here ends the process at once with a
//! message that names the task (worker, slot, the wait it last came out of, the stack's size).
//!
//! Why end the process, not just the task: the fault can come in the middle of any function, with
//! a lock half taken or an entry half written; unwinding from a signal handler through such a
//! frame is not sound, and ending the coroutine without unwinding it (corosensei's trap handler)
//! would leak everything it holds, silently, which is what the `generator` crate did. A stack
//! overflow is a bug with a bound we measure (`porter_task_stack_high_water_bytes`) and size for,
//! so it ends loudly and the supervisor restarts the proxy.
//!
//! The handler is async-signal-safe: it reads a thread-local `Cell` of plain data (set by the
//! worker on each resume; no lazy initialisation, no destructor), formats into a buffer on its own
//! stack, and calls only write(2) and _exit(2). It runs on the thread's alternate signal stack
//! (`SA_ONSTACK`; std gives each thread it spawns one), since the task's stack is exhausted. A
//! fault anywhere else is not ours: the handler puts back the one it replaced (std's, which
//! reports a thread's own stack overflow) and returns, so the fault repeats into that one.

use std::cell::Cell;
use std::sync::{Once, OnceLock};

/// The task running on this thread, as the overflow handler reports it.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    /// The guard page: `[guard_start, guard_end)`; both zero when no task runs.
    guard_start: usize,
    guard_end: usize,
    worker: usize,
    slot: usize,
    /// The wait the task last came out of (`State::as_str`), or `"start"`.
    last_wait: &'static str,
    stack_bytes: usize,
}

impl Default for Running {
    fn default() -> Running {
        Running {
            guard_start: 0,
            guard_end: 0,
            worker: 0,
            slot: 0,
            last_wait: "start",
            stack_bytes: 0,
        }
    }
}

impl Running {
    pub fn new(worker: usize, slot: usize, last_wait: &'static str, stack_bytes: usize) -> Running {
        Running {
            worker,
            slot,
            last_wait,
            stack_bytes,
            ..Running::default()
        }
    }

    pub(super) fn on_stack(self, guard_start: usize, guard_end: usize) -> Running {
        Running {
            guard_start,
            guard_end,
            ..self
        }
    }
}

thread_local! {
    static RUNNING: Cell<Running> = const {
        Cell::new(Running {
            guard_start: 0,
            guard_end: 0,
            worker: 0,
            slot: 0,
            last_wait: "start",
            stack_bytes: 0,
        })
    };
}

pub(super) fn enter(running: Running) {
    RUNNING.with(|r| r.set(running));
}

pub(super) fn leave() {
    RUNNING.with(|r| r.set(Running::default()));
}

/// The SIGSEGV and SIGBUS actions this handler replaced.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();
/// The handler goes in once, after `PREVIOUS` is set.
static INSTALL: Once = Once::new();
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];
/// The exit status after an overflow (EX_SOFTWARE).
pub const OVERFLOW_EXIT: i32 = 70;

/// Installs the handler for the process (once; later calls do nothing). Returns whether this
/// thread has an alternate signal stack, without which the handler cannot run on an overflow.
pub fn install_overflow_handler() -> bool {
    INSTALL.call_once(|| {
        // The old actions are read and stored before the handler goes in: a fault outside a task
        // in between must find them, or the handler would return into the same fault for ever.
        let mut previous = [empty_action(), empty_action()];
        for (signal, old) in SIGNALS.iter().zip(previous.iter_mut()) {
            // SAFETY: a null new action only queries the current one into `old`, a valid place
            // for a sigaction.
            unsafe {
                libc::sigaction(*signal, std::ptr::null(), old);
            }
        }
        let _ = PREVIOUS.set(previous);
        for signal in SIGNALS {
            let mut action = empty_action();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `action` is a fully initialised sigaction whose handler has the
            // three-argument signature SA_SIGINFO calls, and is async-signal-safe (see the module
            // doc). sigemptyset initialises the mask it is given.
            unsafe {
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
    let mut current = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    // SAFETY: a null new stack only queries this thread's alternate signal stack into `current`.
    let queried = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } == 0;
    queried && current.ss_flags & libc::SS_DISABLE == 0
}

fn empty_action() -> libc::sigaction {
    // SAFETY: sigaction is plain old data (integers, a mask and a handler address) for which all
    // zeroes is a valid value: SIG_DFL, no flags, an empty mask.
    unsafe { std::mem::zeroed() }
}

extern "C" fn handler(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t for a handler installed with SA_SIGINFO, and
    // si_addr is the faulting address for SIGSEGV and SIGBUS.
    let address = unsafe { (*info).si_addr() } as usize;
    let running = RUNNING.with(Cell::get);
    if running.guard_end != 0 && (running.guard_start..running.guard_end).contains(&address) {
        let mut message = Message::default();
        message.push(b"porter: a connection's task overflowed its stack (worker ");
        message.number(running.worker);
        message.push(b", task slot ");
        message.number(running.slot);
        message.push(b", last wait: ");
        message.push(running.last_wait.as_bytes());
        message.push(b", stack ");
        message.number(running.stack_bytes / 1024);
        message.push(b" KiB); exiting at once, since what it holds cannot be released safely\n");
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is valid for `len`.
        unsafe {
            libc::write(2, message.bytes.as_ptr().cast(), message.len);
            libc::_exit(OVERFLOW_EXIT);
        }
    }
    // Not a task's overflow: put back the action replaced (the default if, against the order in
    // `install_overflow_handler`, none is stored) and return, so the fault repeats into it.
    let index = usize::from(signal != libc::SIGSEGV);
    let default = empty_action();
    let previous = PREVIOUS.get().map_or(&default, |previous| &previous[index]);
    // SAFETY: sigaction(2) is async-signal-safe, and `previous` is either the action the kernel
    // gave back for this signal before the handler was installed or an all-zero sigaction, which
    // is SIG_DFL with no flags and an empty mask.
    unsafe {
        libc::sigaction(signal, previous, std::ptr::null_mut());
    }
}

/// A message built without allocating (inside the signal handler).
struct Message {
    bytes: [u8; 320],
    len: usize,
}

impl Default for Message {
    fn default() -> Message {
        Message {
            bytes: [0; 320],
            len: 0,
        }
    }
}

impl Message {
    fn push(&mut self, text: &[u8]) {
        let n = text.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&text[..n]);
        self.len += n;
    }

    fn number(&mut self, mut value: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_formats_numbers_without_allocating() {
        let mut message = Message::default();
        message.push(b"worker ");
        message.number(0);
        message.push(b", ");
        message.number(1_048_576);
        assert_eq!(&message.bytes[..message.len], b"worker 0, 1048576");
    }

    /// The bug: the handler went in before `PREVIOUS` held the actions it replaced, so a fault
    /// outside a task in between found nothing to put back and returned into the same fault.
    #[test]
    fn regression_the_replaced_actions_are_stored_before_the_handler_goes_in() {
        install_overflow_handler();
        install_overflow_handler();
        let previous = PREVIOUS.get().expect("stored at install");
        for (signal, old) in SIGNALS.iter().zip(previous) {
            let mut now = empty_action();
            // SAFETY: a null new action only queries the current one into `now`.
            unsafe {
                libc::sigaction(*signal, std::ptr::null(), &mut now);
            }
            assert_eq!(now.sa_sigaction, handler as *const () as usize);
            assert_ne!(
                old.sa_sigaction, handler as *const () as usize,
                "not our own"
            );
        }
    }
}
