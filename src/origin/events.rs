//! The event log: every `/getbalance` outcome as one JSON line appended to `--event-log`, and
//! `/getlogs` reading them back as a JSON array.
//!
//! Each line leaves in a single `write` on a file opened with `O_APPEND`, so concurrent workers never
//! interleave lines and a crash can only tear the last one. Reading skips lines that do not parse (a
//! torn tail); opening a log whose tail is torn first ends that line, so the next event starts clean.
//! The file is the only copy: it survives restarts, and several runs simply add to it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One `/getbalance` outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds: `2025-01-31T12:00:00.123Z`.
    pub timestamp: String,
    pub client_ip: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// `200`, `403`, `500` or `timeout`.
    pub outcome: String,
}

/// The append-only JSON-lines file.
pub struct EventLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl EventLog {
    /// Opens (or creates) the log for appending, ending a torn last line first.
    pub fn open(path: &Path) -> io::Result<EventLog> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                log::warn!(
                    "event log {} ends in a torn line (a crash mid-write?); it will be skipped",
                    path.display()
                );
                file.write_all(b"\n")?;
            }
        }
        Ok(EventLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as one line, in one write.
    pub fn append(&self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line)
    }

    /// The newest `limit` events (all when `None`), oldest first, skipping lines that do not parse.
    pub fn read(&self, limit: Option<usize>) -> io::Result<Vec<Event>> {
        read_events(File::open(&self.path)?, limit)
    }
}

/// Reads JSON lines, keeping only the newest `limit` valid ones.
fn read_events(source: impl Read, limit: Option<usize>) -> io::Result<Vec<Event>> {
    let mut kept: VecDeque<Event> = VecDeque::new();
    let mut skipped = 0usize;
    let mut reader = BufReader::new(source);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(text) {
            Ok(event) => {
                if limit == Some(0) {
                    continue;
                }
                kept.push_back(event);
                if limit.is_some_and(|n| kept.len() > n) {
                    kept.pop_front();
                }
            }
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        log::debug!("skipped {skipped} unreadable event log lines");
    }
    Ok(kept.into())
}

/// The events as a JSON array, one event per line so it reads well in a terminal.
pub fn to_json_array(events: &[Event]) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for (i, event) in events.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        if let Ok(json) = serde_json::to_vec(event) {
            out.extend_from_slice(&json);
        }
    }
    out.extend_from_slice(if events.is_empty() { b"]\n" } else { b"\n]\n" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Event {
        Event {
            timestamp: "2025-01-01T00:00:00.000Z".into(),
            client_ip: "127.0.0.1".into(),
            path: format!("/getbalance?n={n}"),
            outcome: "200".into(),
        }
    }

    #[test]
    fn appends_reads_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(&dir.path().join("server.log")).unwrap();
        for n in 0..5 {
            log.append(&event(n)).unwrap();
        }
        assert_eq!(log.read(None).unwrap().len(), 5);
        assert_eq!(log.read(Some(2)).unwrap(), vec![event(3), event(4)]);
        assert!(log.read(Some(0)).unwrap().is_empty());
    }

    #[test]
    fn skips_a_torn_line_and_ends_it_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let mut text = serde_json::to_string(&event(1)).unwrap();
        text.push_str("\n{\"timestamp\":\"2025-");
        std::fs::write(&path, text).unwrap();
        let log = EventLog::open(&path).unwrap();
        assert_eq!(log.read(None).unwrap(), vec![event(1)]);
        log.append(&event(2)).unwrap();
        assert_eq!(log.read(None).unwrap(), vec![event(1), event(2)]);
    }

    #[test]
    fn json_array_parses_back() {
        let events = vec![event(1), event(2)];
        let parsed: Vec<Event> = serde_json::from_slice(&to_json_array(&events)).unwrap();
        assert_eq!(parsed, events);
        let empty: Vec<Event> = serde_json::from_slice(&to_json_array(&[])).unwrap();
        assert!(empty.is_empty());
    }
}
