//! The runtime: tasks (stackful coroutines), the per-worker event loop, timers, wake-ups from other
//! threads, [`Signal`], and the locks the request path may take. It knows no HTTP and no proxy:
//! `net` builds sockets and the server on it, `cache` waits on its `Signal`, and neither is below it.
//!
//! ```text
//!   proxy ─────────────> cache ────────────┐   (cache never imports net)
//!     │                    │ Signal, Mutex │
//!     ▼                    ▼               ▼
//!   net (Socket, Server) ──────────────> runtime: reactor (mio loop, waits, timers)
//!                                                 task (coroutines; the one `unsafe` module)
//!                                                 signal, lock, limits
//! ```
//!
//! # Why corosensei
//!
//! The request path is blocking-style code that yields inside socket reads and writes, `Signal`
//! waits and lookups; it needs coroutines with their own stacks, or a rewrite into `async`. The
//! `generator` crate (0.8.11) carried it until issue 22: a process-wide SIGSEGV handler that takes a
//! lock and prints from inside the signal handler, a panic hook swapped when an unfinished generator
//! drops, open soundness issues (#58, #59) and a deprecated free `yield_with`, and an overflowing
//! task that was `mem::forget`-ed with everything it held. The comparison made:
//!
//! | | generator 0.8.11 | corosensei 0.3.4 (chosen) | tokio current-thread per worker |
//! |---|---|---|---|
//! | soundness | open unsoundness issues; signal handler not async-signal-safe; global panic hook | no process-wide state; unfinished coroutines unwound on drop; `unsafe` is the crate's, audited API is safe | sound, audited; but every `.lock()` across `.await` still possible (clippy lint) |
//! | maintenance | one maintainer, workarounds for new rustc (rt.rs, 1.89) | Amanieu d'Antras (Rust libs team), used by Wasmer | large team, the ecosystem default |
//! | resume + yield round trip | 16-27 ns | 3.8-5.1 ns | `yield_now` through the scheduler: 143-150 ns |
//! | start + finish on a reused stack | 38-66 ns | 24-79 ns | spawn + await a task: 369-376 ns |
//! | stack memory | 1 MiB mmap + guard, pages touched stay resident | same (mmap + guard page), pages touched stay resident | no stacks: a future sized by its deepest await (KiBs), no guard pages, no map-count ceiling |
//! | change to the request path | none | none (same free-function yield) | rewrite of every read/write path into `async` (thousands of lines) |
//! | HTTP/2 (the next capability) | would need its own h2 | h2 0.4 takes tokio with `io-util` only (its `AsyncRead`/`AsyncWrite`, no runtime, no timers): `Socket` can implement those traits (`Pending` where it would yield, the waker waking the task), and a task polls the connection's h2 futures, parking between polls; or an h2 frame layer of our own; each stream maps onto a task | h2 fits directly (hyper) |
//!
//! Round trips were measured with throwaway programs (5 million round trips, three rounds per run,
//! two runs, release builds, on the 2-core development machine under load from other builds):
//! generator through its free `yield_with` as Porter called it, corosensei through
//! `Yielder::suspend`, tokio 1.54 with `yield_now` in a current-thread runtime (which includes its
//! run queue; Porter's loop adds its own queue to the bare switch measured for the other two). Porter's
//! yield adds a thread-local read and a debug-only assertion to that. Tokio would carry HTTP/2 with
//! the least work, but it means rewriting the whole request path into `async`, which is larger than
//! this issue and would lose the property that request code reads top to bottom; corosensei replaces
//! `generator` under the same code at a fifth of its switch cost, and h2 can be polled from a task.
//! That trade is the reason for the choice.
//!
//! # Threads that are not on the worker loops
//!
//! - **The tunnel relay** (CONNECT without interception, `proxy::tunnel`): one event-driven thread
//!   of its own with a small state machine per tunnel (two buffers), not a task. A tunnel carries
//!   bytes the proxy cannot read, for hours, with no parsing, cache or request state; a task would
//!   hold a stack and two mappings per tunnel for nothing, and keeping tunnels off the workers keeps
//!   the map-count ceiling for requests. Sockets leave the worker's poller before they move
//!   (`Registration::release`).
//! - **Name lookups** (`net::resolve`): `getaddrinfo` has no non-blocking form in libc, so a small
//!   pool of resolver threads calls it and wakes the waiting task (state `Resolve`) through its
//!   worker's queue; a worker never blocks on DNS.
//! - **Disk work** (`blocking`): opening a cache entry and reading its head and body, creating,
//!   writing and renaming a new one, and removing one, run on a small pool of disk threads
//!   (`--disk-threads`, 4 by default) while the task waits in state `Disk`, woken the same way. A
//!   slow disk then stalls only the requests that need it; memory-tier hits never wait for it.
//!   Sending a body from a file already open (`sendfile`) stays on the worker: it copies from the
//!   page cache, and the open and the first reads, which bring the file into it, were the disk
//!   thread's.
//!
//! # Stacks: size, overflow, and the ceiling they set
//!
//! Each task has a [`STACK_BYTES`] stack mapped with a guard page below it. The deepest any finished
//! task reached is `porter_task_stack_high_water_bytes` in /metrics (counted with `mincore(2)` when a
//! task ends: resident pages of its stack, no faults). An overflow hits the guard page and ends the
//! process at once with a message naming the task (see `task::overflow` for why not just the task).
//!
//! One stack is two memory mappings (the guard page and the stack), and the kernel caps a process at
//! `vm.max_map_count` mappings (65530 by default). Stacks live for open connections plus up to 64
//! spare per worker, so `--max-connections` is checked against that at start ([`limits`]). An idle
//! keep-alive connection keeps the pages its task touched resident (its stack's high-water mark,
//! rounded to pages), besides its buffers.

pub mod blocking;
pub mod limits;
pub mod lock;
pub mod reactor;
mod signal;
#[allow(unsafe_code)]
mod task;

pub use lock::{Mutex, MutexGuard, RwLock};
pub use reactor::{Gauges, STACK_BYTES, State};
pub use signal::Signal;
