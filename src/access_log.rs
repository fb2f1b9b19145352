//! The access log: one line per request, formatted by the worker and written by a background thread
//! in batches, so a request costs a channel send instead of a locked write to stderr.
//!
//! Lines go to stderr like the rest of the log, in env_logger's shape
//! (`[time INFO  porter::access] …`), and only when the `porter::access` target is enabled at info
//! (`RUST_LOG`). They appear within [`FLUSH_EVERY`]; [`flush`] writes what is pending (at shutdown).
//! When the writer falls behind by [`MAX_PENDING`] lines, further lines are counted and dropped
//! rather than held without bound.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// The log target the lines are written under.
pub const TARGET: &str = "porter::access";
/// How long a line may wait before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Lines that may wait for the writer.
pub const MAX_PENDING: usize = 65_536;

struct Writer {
    lines: Sender<String>,
    flushes: Sender<Sender<()>>,
}

static WRITER: OnceLock<Option<Writer>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether access lines are wanted at all (so callers can skip formatting them).
pub fn enabled() -> bool {
    log::log_enabled!(target: TARGET, log::Level::Info)
}

/// Queues one access line (without its prefix or newline).
pub fn write(line: String) {
    let writer = WRITER.get_or_init(|| enabled().then(start).flatten());
    if let Some(writer) = writer
        && writer.lines.try_send(line).is_err()
    {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes every queued line now (bounded wait), e.g. before the process exits.
pub fn flush() {
    if let Some(Some(writer)) = WRITER.get() {
        let (done, wait) = crossbeam_channel::bounded(1);
        if writer.flushes.send(done).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(2));
        }
    }
}

fn start() -> Option<Writer> {
    let (lines, pending) = crossbeam_channel::bounded(MAX_PENDING);
    let (flushes, flush_requests) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || run(&pending, &flush_requests))
        .map_err(|e| log::warn!("cannot start the access log writer: {e}"))
        .ok()?;
    Some(Writer { lines, flushes })
}

fn run(pending: &Receiver<String>, flush_requests: &Receiver<Sender<()>>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut reported_drops = 0;
    loop {
        let ack = match flush_requests.recv_timeout(FLUSH_EVERY) {
            Ok(ack) => Some(ack),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let prefix = format!(
            "[{} INFO  {TARGET}] ",
            crate::timefmt::rfc3339(SystemTime::now())
        );
        while let Ok(line) = pending.try_recv() {
            batch.extend_from_slice(prefix.as_bytes());
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
        }
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > reported_drops {
            let note = format!(
                "{prefix}{} access lines dropped: the log could not keep up\n",
                dropped - reported_drops
            );
            batch.extend_from_slice(note.as_bytes());
            reported_drops = dropped;
        }
        if !batch.is_empty() {
            let _ = std::io::stderr().lock().write_all(&batch);
            batch.clear();
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}
