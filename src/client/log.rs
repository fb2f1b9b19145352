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

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::FetchError;
use crate::http::ResponseHead;

/// An append-only log file.
#[derive(Debug, Clone)]
pub struct DownloadLog {
    path: PathBuf,
}

impl DownloadLog {
    pub fn new(path: &Path) -> Self {
        DownloadLog {
            path: path.to_path_buf(),
        }
    }

    /// Appends one record. The file is opened per record in append mode, so every record lands at
    /// the end even if another process wrote meanwhile.
    fn append(&self, record: &str) -> Result<(), FetchError> {
        let error = |error| FetchError::Log {
            path: self.path.clone(),
            error,
        };
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(error)?;
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
        let mut record = format!("=== {} {method} {url}\n", rfc3339(at));
        record.push_str(&status_line(head));
        record.push('\n');
        for (name, value) in head.headers.iter() {
            record.push_str(name);
            record.push_str(": ");
            record.push_str(&String::from_utf8_lossy(value));
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
            "=== {} {method} {url}\nerror: {error}\n\n",
            rfc3339(at)
        ))
    }
}

/// `HTTP/1.1 200 OK`, as received.
pub fn status_line(head: &ResponseHead) -> String {
    format!("{} {} {}", head.version.as_str(), head.status, head.reason)
        .trim_end()
        .to_string()
}

/// UTC time as `2026-05-01T12:00:00.123Z` (RFC 3339), without a date crate.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
        assert_eq!(rfc3339(leap_day), "2000-02-29T12:34:56.789Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_777_593_600);
        assert_eq!(rfc3339(later), "2026-05-01T00:00:00.000Z");
    }

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
