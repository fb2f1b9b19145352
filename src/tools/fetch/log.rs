//! The download log (`download.log`): one record per attempt, appended with a single write so records
//! of concurrent `porter fetch` runs do not interleave.
//!
//! ```text
//! === 2026-05-01T12:00:00.123Z GET http://example.com/
//! HTTP/1.1 200 OK
//! Content-Type: text/html
//! Content-Length: 1256
//!
//! ```
//! A failed attempt has `error: <message>` where the status line would be.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::FetchError;
use crate::http::ResponseHead;
use crate::timefmt::rfc3339;

/// An append-only log file.
#[derive(Debug, Clone)]
pub struct DownloadLog {
    /// `None`: records go nowhere (`--print`, whose output is stdout alone).
    path: Option<PathBuf>,
}

impl DownloadLog {
    pub fn new(path: &Path) -> Self {
        DownloadLog {
            path: Some(path.to_path_buf()),
        }
    }

    /// A log that writes nothing.
    pub fn off() -> Self {
        DownloadLog { path: None }
    }

    /// Appends one record. The file is opened per record in append mode, so every record lands at
    /// the end even if another process wrote meanwhile.
    fn append(&self, record: &str) -> Result<(), FetchError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let error = |error| FetchError::Log {
            path: path.clone(),
            error,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let mut file = crate::perms::log_options().open(path).map_err(error)?;
        file.write_all(record.as_bytes()).map_err(error)
    }

    /// Logs a response: URL, time, status line and every header field.
    pub fn response(
        &self,
        method: &str,
        url: &str,
        at: SystemTime,
        head: &ResponseHead,
    ) -> Result<(), FetchError> {
        let mut record = format!(
            "=== {} {method} {}\n",
            rfc3339(at),
            crate::printable::escape(url)
        );
        record.push_str(&crate::printable::escape(&status_line(head)));
        record.push('\n');
        for (name, value) in head.headers.iter() {
            record.push_str(name);
            record.push_str(": ");
            record.push_str(&crate::printable::escape(&String::from_utf8_lossy(value)));
            record.push('\n');
        }
        record.push('\n');
        self.append(&record)
    }

    /// Logs an attempt that got no response.
    pub fn failure(
        &self,
        method: &str,
        url: &str,
        at: SystemTime,
        error: &FetchError,
    ) -> Result<(), FetchError> {
        self.append(&format!(
            "=== {} {method} {}\nerror: {}\n\n",
            rfc3339(at),
            crate::printable::escape(url),
            crate::printable::escape(&error.to_string())
        ))
    }
}

/// `HTTP/1.1 200 OK`, as received.
pub fn status_line(head: &ResponseHead) -> String {
    format!("{} {} {}", head.version.as_str(), head.status, head.reason)
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn appends_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = DownloadLog::new(&dir.path().join("sub/download.log"));
        let mut head = ResponseHead::new(404);
        head.headers.append("X-A", "1");
        log.response("GET", "http://h/", UNIX_EPOCH, &head).unwrap();
        let error = FetchError::Truncated {
            got: 1,
            expected: Some(2),
        };
        log.failure("HEAD", "http://h/x", UNIX_EPOCH, &error)
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("sub/download.log")).unwrap();
        assert_eq!(
            text,
            "=== 1970-01-01T00:00:00.000Z GET http://h/\nHTTP/1.1 404 Not Found\nX-A: 1\n\n\
             === 1970-01-01T00:00:00.000Z HEAD http://h/x\n\
             error: the response body ended after 1 of 2 bytes\n\n"
        );
    }
}
