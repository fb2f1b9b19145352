//! The access log: one line per request, formatted by the worker and written by a background thread
//! in batches, so a request costs a channel send instead of a locked write.
//!
//! Lines go to stderr like the rest of the log, in env_logger's shape
//! (`[time INFO  porter::access] …`), and only when the `porter::access` target is enabled at info
//! (`RUST_LOG`); or, with `--access-log FILE`, bare to that file, always. `--log-format` picks the
//! line (the formatting is `proxy::logline`'s); lines in the `squid` and `json` formats are written
//! bare to stderr too, so tools can read them. SIGUSR1 calls [`reopen`], for logrotate.
//!
//! Lines appear within [`FLUSH_EVERY`]; [`flush`] writes what is pending (at shutdown). When the
//! writer falls behind by [`MAX_PENDING`] lines, further lines are counted and dropped rather than
//! held without bound.
//!
//! ```text
//!  worker ──line──> bounded channel ──> writer thread ──> stderr | FILE
//!  configure / reopen / flush ──control──┘
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::runtime::Mutex;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// The log target the lines are written under.
pub const TARGET: &str = "porter::access";
/// How long a line may wait before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Lines that may wait for the writer.
pub const MAX_PENDING: usize = 65_536;

/// The shape of an access line (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Porter's own line: time, elapsed, client, method, URL, status, bytes, outcome.
    #[default]
    Porter,
    /// Squid's native access.log line, as GoAccess, SARG and Calamaris read it.
    Squid,
    /// One JSON object a line.
    Json,
}

impl LogFormat {
    fn from_u8(n: u8) -> LogFormat {
        match n {
            1 => LogFormat::Squid,
            2 => LogFormat::Json,
            _ => LogFormat::Porter,
        }
    }
}

/// Where access lines go and how they look; reloadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// The file lines are appended to; `None` is stderr.
    pub file: Option<PathBuf>,
    pub format: LogFormat,
    /// Whether logged URLs keep their query string (`--log-query`).
    pub query: bool,
}

enum Control {
    Flush(Sender<()>),
    /// Write to this sink from now on.
    Use(Sink),
    /// Open the file again by its name (it was moved away by logrotate).
    Reopen,
}

enum Sink {
    Stderr,
    File(File, PathBuf),
}

struct Writer {
    lines: Sender<String>,
    control: Sender<Control>,
}

static WRITER: OnceLock<Option<Writer>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FORMAT: AtomicU8 = AtomicU8::new(0);
static QUERY: AtomicBool = AtomicBool::new(true);
static TO_FILE: AtomicBool = AtomicBool::new(false);
static CURRENT_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Whether access lines are wanted at all (so callers can skip formatting them).
pub fn enabled() -> bool {
    TO_FILE.load(Ordering::Relaxed) || log::log_enabled!(target: TARGET, log::Level::Info)
}

/// The line format and whether query strings are kept.
pub fn format() -> (LogFormat, bool) {
    (
        LogFormat::from_u8(FORMAT.load(Ordering::Relaxed)),
        QUERY.load(Ordering::Relaxed),
    )
}

/// Opens a log file for appending, creating it (and nothing else) if needed, 0640: the lines name
/// clients and URLs. An existing file that other users can read is warned about.
fn open(path: &Path) -> io::Result<File> {
    let file = crate::perms::log_options().open(path)?;
    crate::perms::warn_if_log_is_open(&file, path);
    Ok(file)
}

/// Applies settings: the format at once, the file for the next lines. A file that cannot be opened
/// is an error and changes nothing.
pub fn configure(settings: &LogSettings) -> io::Result<()> {
    let mut current = CURRENT_FILE.lock().unwrap_or_else(|e| e.into_inner());
    if *current != settings.file || settings.file.is_some() && WRITER.get().is_none() {
        let sink = match &settings.file {
            Some(path) => Sink::File(
                open(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot open access log {}: {e}", path.display()),
                    )
                })?,
                path.clone(),
            ),
            None => Sink::Stderr,
        };
        // A writer started here starts with the sink: handed over as a message, it could be taken
        // after the first lines, which would then go to stderr (the thread may start late).
        let mut first = Some(sink);
        let started = WRITER.get_or_init(|| start(first.take().unwrap_or(Sink::Stderr)));
        if let (Some(writer), Some(sink)) = (started, first) {
            let _ = writer.control.send(Control::Use(sink));
        }
        current.clone_from(&settings.file);
    }
    TO_FILE.store(settings.file.is_some(), Ordering::Relaxed);
    FORMAT.store(settings.format as u8, Ordering::Relaxed);
    QUERY.store(settings.query, Ordering::Relaxed);
    Ok(())
}

/// Asks the writer to open its file again by name (SIGUSR1 after logrotate moved it).
pub fn reopen() {
    if let Some(Some(writer)) = WRITER.get() {
        let _ = writer.control.send(Control::Reopen);
    }
}

fn writer() -> Option<&'static Writer> {
    WRITER.get_or_init(|| start(Sink::Stderr)).as_ref()
}

/// Queues one access line (without its prefix or newline).
pub fn write(line: String) {
    if let Some(writer) = writer()
        && writer.lines.try_send(line).is_err()
    {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes every queued line now (bounded wait), e.g. before the process exits.
pub fn flush() {
    if let Some(Some(writer)) = WRITER.get() {
        let (done, wait) = crossbeam_channel::bounded(1);
        if writer.control.send(Control::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(2));
        }
    }
}

fn start(sink: Sink) -> Option<Writer> {
    let (lines, pending) = crossbeam_channel::bounded(MAX_PENDING);
    let (control, requests) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || run(&pending, &requests, sink))
        .map_err(|e| log::warn!("cannot start the access log writer: {e}"))
        .ok()?;
    Some(Writer { lines, control })
}

fn run(pending: &Receiver<String>, requests: &Receiver<Control>, mut sink: Sink) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut reported_drops = 0;
    loop {
        let mut ack = None;
        match requests.recv_timeout(FLUSH_EVERY) {
            Ok(Control::Flush(done)) => ack = Some(done),
            Ok(Control::Use(new)) => {
                write_out(&mut sink, &mut batch, pending, &mut reported_drops);
                sink = new;
            }
            Ok(Control::Reopen) => {
                write_out(&mut sink, &mut batch, pending, &mut reported_drops);
                if let Sink::File(file, path) = &mut sink {
                    match open(path) {
                        Ok(reopened) => *file = reopened,
                        Err(e) => log::warn!(
                            "cannot reopen access log {}: {e}; still writing to the old file",
                            path.display()
                        ),
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        write_out(&mut sink, &mut batch, pending, &mut reported_drops);
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

/// Writes every pending line to the sink.
fn write_out(
    sink: &mut Sink,
    batch: &mut Vec<u8>,
    pending: &Receiver<String>,
    reported_drops: &mut u64,
) {
    // Porter's own lines on stderr look like the rest of the log; other formats are for tools.
    let prefix = match (&sink, format().0) {
        (Sink::Stderr, LogFormat::Porter) => format!(
            "[{} INFO  {TARGET}] ",
            crate::timefmt::rfc3339(SystemTime::now())
        ),
        _ => String::new(),
    };
    while let Ok(line) = pending.try_recv() {
        batch.extend_from_slice(prefix.as_bytes());
        batch.extend_from_slice(line.as_bytes());
        batch.push(b'\n');
    }
    let dropped = DROPPED.load(Ordering::Relaxed);
    if dropped > *reported_drops {
        log::warn!(
            "{} access lines dropped: the log could not keep up",
            dropped - *reported_drops
        );
        *reported_drops = dropped;
    }
    if batch.is_empty() {
        return;
    }
    let written = match sink {
        Sink::Stderr => io::stderr().lock().write_all(batch),
        Sink::File(file, _) => file.write_all(batch),
    };
    if let Err(e) = written {
        log::warn!("cannot write the access log: {e}");
    }
    batch.clear();
}
