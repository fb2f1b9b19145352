//! The event log: every `/getbalance` outcome as one JSON line appended to `--event-log`, capped
//! at `--event-log-max` by rotating to `NAME.1`. Reading it back for `/getlogs` is [`super::export`].
//!
//! Each line leaves in a single `write` on a file opened with `O_APPEND`, so concurrent workers never
//! interleave lines and a crash can only tear the last one; opening a log whose tail is torn first
//! ends that line, so the next event starts clean. One event is bounded: the logged target keeps at
//! most [`MAX_LOGGED_TARGET`] bytes, so a flood of 8 KiB queries cannot make the log 30 times larger.
//!
//! ```text
//!  append ─ line fits under --event-log-max ──────────────> write to NAME
//!         └ it does not ─> rename NAME over NAME.1 ─> new NAME ─> write
//! ```
//! The file survives restarts, and several runs simply add to it.

use crate::runtime::Mutex;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most bytes of the request target an event keeps; longer ones end in `...`.
pub const MAX_LOGGED_TARGET: usize = 512;
/// The default cap of the log file before it rotates.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// One `/getbalance` outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds: `2025-01-31T12:00:00.123Z`.
    pub timestamp: String,
    pub client_ip: String,
    /// The request target as sent (path and query), cut at [`MAX_LOGGED_TARGET`] bytes.
    pub path: String,
    /// `200`, `403`, `500` or `timeout`.
    pub outcome: String,
}

/// `target`, or its first [`MAX_LOGGED_TARGET`] bytes (on a character boundary) and `...`, with
/// control characters and bidi overrides escaped ([`crate::printable`]).
pub fn logged_target(target: &str) -> String {
    if target.len() <= MAX_LOGGED_TARGET {
        return crate::printable::escape(target).into_owned();
    }
    let mut end = MAX_LOGGED_TARGET;
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", crate::printable::escape(&target[..end]))
}

/// The rotated log beside `path`: `NAME.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    path.with_file_name(name)
}

struct Open {
    file: File,
    /// Bytes in the file, as far as this process knows.
    len: u64,
}

/// The append-only JSON-lines file.
pub struct EventLog {
    path: PathBuf,
    max_bytes: u64,
    open: Mutex<Open>,
}

impl EventLog {
    /// Opens (or creates) the log for appending, ending a torn last line first. The log rotates
    /// when an event would take it past `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<EventLog> {
        let file = open_append(path)?;
        let len = end_torn_line(&file, path)?;
        Ok(EventLog {
            path: path.to_path_buf(),
            max_bytes,
            open: Mutex::new(Open { file, len }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as one line, in one write, rotating first if the line would not fit.
    pub fn append(&self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len > 0 && open.len + line.len() as u64 > self.max_bytes {
            fs::rename(&self.path, rotated(&self.path))?;
            open.file = open_append(&self.path)?;
            open.len = 0;
            log::info!(
                "event log {} reached {} bytes; the older events are in {}",
                self.path.display(),
                self.max_bytes,
                rotated(&self.path).display()
            );
        }
        open.file.write_all(&line)?;
        open.len += line.len() as u64;
        Ok(())
    }
}

/// Opens the log for appending, creating it 0640 (events name clients and the paths they asked for).
fn open_append(path: &Path) -> io::Result<File> {
    let file = crate::perms::log_options().read(true).open(path)?;
    crate::perms::warn_if_log_is_open(&file, path);
    Ok(file)
}

/// Ends a torn last line with a newline; returns the file's length afterwards.
fn end_torn_line(file: &File, path: &Path) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    let mut reader = file;
    reader.seek(SeekFrom::Start(len - 1))?;
    reader.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    log::warn!(
        "event log {} ends in a torn line (a crash mid-write?); it will be skipped",
        path.display()
    );
    let mut writer = file;
    writer.write_all(b"\n")?;
    Ok(len + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::serve::export;

    pub fn event(n: u32) -> Event {
        Event {
            timestamp: "2025-01-01T00:00:00.000Z".into(),
            client_ip: "127.0.0.1".into(),
            path: format!("/getbalance?n={n}"),
            outcome: "200".into(),
        }
    }

    fn read(log: &EventLog, limit: Option<u64>) -> Vec<Event> {
        let mut out = Vec::new();
        export::Export::open(log.path(), limit)
            .unwrap()
            .write_to(&mut out)
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn appends_reads_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(&dir.path().join("server.log"), DEFAULT_MAX_BYTES).unwrap();
        for n in 0..5 {
            log.append(&event(n)).unwrap();
        }
        assert_eq!(read(&log, None).len(), 5);
        assert_eq!(read(&log, Some(2)), vec![event(3), event(4)]);
        assert!(read(&log, Some(0)).is_empty());
    }

    #[test]
    fn skips_a_torn_line_and_ends_it_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let mut text = serde_json::to_string(&event(1)).unwrap();
        text.push_str("\n{\"timestamp\":\"2025-");
        std::fs::write(&path, text).unwrap();
        let log = EventLog::open(&path, DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(read(&log, None), vec![event(1)]);
        log.append(&event(2)).unwrap();
        assert_eq!(read(&log, None), vec![event(1), event(2)]);
        assert_eq!(read(&log, Some(5)), vec![event(1), event(2)]);
    }

    #[test]
    fn rotates_to_dot_one_and_reads_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let line = serde_json::to_vec(&event(0)).unwrap().len() as u64 + 1;
        let log = EventLog::open(&path, 3 * line).unwrap();
        for n in 0..8 {
            log.append(&event(n)).unwrap();
        }
        // 0..3 went to .1 and were replaced by 3..6 when the second rotation came; 6, 7 are current.
        assert!(std::fs::metadata(&path).unwrap().len() <= 3 * line);
        assert_eq!(
            std::fs::read(rotated(&path)).unwrap().len() as u64,
            3 * line
        );
        let all: Vec<Event> = (3..8).map(event).collect();
        assert_eq!(read(&log, None), all);
        assert_eq!(read(&log, Some(4)), all[1..].to_vec());
    }

    #[test]
    fn long_targets_are_cut() {
        assert_eq!(logged_target("/getbalance?a=1"), "/getbalance?a=1");
        let long = format!("/getbalance?{}", "é".repeat(4000));
        let cut = logged_target(&long);
        assert!(
            cut.len() <= MAX_LOGGED_TARGET + 3 && cut.ends_with("..."),
            "{}",
            cut.len()
        );
    }
}
