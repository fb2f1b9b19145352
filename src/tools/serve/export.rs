//! `/getlogs`: the event log streamed back as a JSON array, oldest first, in flat memory whatever
//! the log's size. Only one line is ever held (at most [`MAX_LINE`] bytes; longer ones are skipped
//! unread), and `?limit=N` finds where the newest N events start by reading the file backwards from
//! its end, so the rest of it is never read at all.
//!
//! ```text
//!  open ─> snapshot NAME.1 and NAME (their lengths now; later appends are not included)
//!       ├─ no limit ─> both files whole
//!       └─ limit N ──> scan back from the end of NAME (then NAME.1) for the N-th newest valid line
//!  write_to ─> "[" valid lines joined by ",\n" "]"   (torn or foreign lines are skipped)
//! ```
//! A rotation between the two opens can leave some events out of one answer; it never repeats any.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::events::{Event, rotated};

/// The longest line considered: far beyond any event the server writes (they are bounded).
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes read at a time when scanning backwards.
const BLOCK: usize = 64 * 1024;

/// A part of one file to stream: bytes `start..end`.
#[derive(Debug)]
struct Segment {
    file: File,
    start: u64,
    end: u64,
}

/// The events one `/getlogs` answer will stream.
#[derive(Debug)]
pub struct Export {
    segments: Vec<Segment>,
}

impl Export {
    /// Snapshots the log at `path` (and its rotated `NAME.1`); with `limit`, only the newest events.
    pub fn open(path: &Path, limit: Option<u64>) -> io::Result<Export> {
        let older = match File::open(rotated(path)) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let current = File::open(path)?;
        let mut segments = Vec::with_capacity(2);
        for file in older.into_iter().chain([current]) {
            let end = file.metadata()?.len();
            segments.push(Segment {
                file,
                start: 0,
                end,
            });
        }
        if let Some(mut wanted) = limit {
            // Newest first: find where the wanted events start, dropping older segments entirely.
            let mut keep = segments.len();
            for segment in segments.iter_mut().rev() {
                if wanted == 0 {
                    break;
                }
                let (start, found) = start_of_newest(&segment.file, segment.end, wanted)?;
                segment.start = start;
                wanted -= found;
                keep -= 1;
            }
            segments.drain(..keep);
        }
        Ok(Export { segments })
    }

    /// Writes the JSON array to `out`; returns the bytes written.
    pub fn write_to(self, out: &mut impl Write) -> io::Result<u64> {
        let mut written = 0u64;
        let mut first = true;
        let mut line = Vec::with_capacity(1024);
        out.write_all(b"[")?;
        for segment in self.segments {
            let mut file = segment.file;
            file.seek(SeekFrom::Start(segment.start))?;
            let mut reader =
                BufReader::with_capacity(BLOCK, file.take(segment.end - segment.start));
            while read_line(&mut reader, &mut line)? {
                if !is_event(&line) {
                    continue;
                }
                out.write_all(if first { b"\n" } else { b",\n" })?;
                out.write_all(&line)?;
                written += line.len() as u64 + 2;
                first = false;
            }
        }
        out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
        Ok(written + 3)
    }
}

/// Whether a line is an event the server wrote (a torn or foreign line is not).
fn is_event(line: &[u8]) -> bool {
    !line.is_empty() && serde_json::from_slice::<Event>(line).is_ok()
}

/// Reads the next line (without its `\n`) into `line`; an over-long line comes back empty. Returns
/// false at the end.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if too_long {
                line.clear();
            }
            return Ok(any);
        }
        any = true;
        let (part, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long && line.len() + part.len() <= MAX_LINE {
            line.extend_from_slice(part);
        } else {
            too_long = true;
            line.clear();
        }
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(true);
        }
    }
}

/// Scans `file` backwards from `end` for the `wanted` newest valid lines. Returns the offset the
/// oldest of them starts at (0 when the file holds fewer) and how many it found.
fn start_of_newest(file: &File, end: u64, wanted: u64) -> io::Result<(u64, u64)> {
    let mut found = 0u64;
    // The line being looked at ends here (exclusive, before its newline).
    let mut line_end = end;
    let mut block = vec![0u8; BLOCK];
    let mut line = Vec::with_capacity(1024);
    let mut position = end;
    while position > 0 {
        let size = (position as usize).min(BLOCK);
        let from = position - size as u64;
        file.read_exact_at(&mut block[..size], from)?;
        for i in (0..size).rev() {
            if block[i] != b'\n' {
                continue;
            }
            let start = from + i as u64 + 1;
            if valid_line_at(file, start, line_end, &mut line)? {
                found += 1;
                if found == wanted {
                    return Ok((start, found));
                }
            }
            line_end = from + i as u64;
        }
        position = from;
    }
    if valid_line_at(file, 0, line_end, &mut line)? {
        found += 1;
    }
    Ok((0, found))
}

/// Whether bytes `start..end` of `file` are one valid event line.
fn valid_line_at(file: &File, start: u64, end: u64, line: &mut Vec<u8>) -> io::Result<bool> {
    let len = end.saturating_sub(start) as usize;
    if len == 0 || len > MAX_LINE {
        return Ok(false);
    }
    line.resize(len, 0);
    file.read_exact_at(line, start)?;
    Ok(is_event(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u32) -> String {
        format!(
            "{{\"timestamp\":\"t\",\"client_ip\":\"127.0.0.1\",\"path\":\"/getbalance?n={n}\",\"outcome\":\"200\"}}\n"
        )
    }

    fn export(path: &Path, limit: Option<u64>) -> Vec<u32> {
        let mut out = Vec::new();
        Export::open(path, limit)
            .unwrap()
            .write_to(&mut out)
            .unwrap();
        let events: Vec<Event> = serde_json::from_slice(&out).expect("valid json");
        events
            .iter()
            .map(|e| e.path.rsplit('=').next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn limits_read_from_the_end_across_blocks_and_skip_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        let mut text = String::new();
        for n in 0..3000 {
            text.push_str(&line(n));
            if n % 700 == 0 {
                text.push_str("torn {\"timestamp\n\n");
            }
            if n == 1500 {
                // A line longer than MAX_LINE, spanning blocks: skipped, not held.
                text.push_str(&"x".repeat(MAX_LINE * 2 + 5));
                text.push('\n');
            }
        }
        std::fs::write(&path, &text).unwrap();
        assert_eq!(export(&path, None), (0..3000).collect::<Vec<_>>());
        for limit in [1u64, 2, 999, 1499, 1500, 2999, 3000, 5000] {
            let want: Vec<u32> = (3000u32.saturating_sub(limit as u32)..3000).collect();
            assert_eq!(export(&path, Some(limit)), want, "limit {limit}");
        }
        assert!(export(&path, Some(0)).is_empty());
    }

    #[test]
    fn an_empty_log_is_an_empty_array() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        std::fs::write(&path, "").unwrap();
        assert!(export(&path, None).is_empty());
        assert!(export(&path, Some(3)).is_empty());
    }
}
