//! What `porter fetch` prints: one line per request on stdout (status, size, time, saved path), and
//! human-friendly sizes and durations for it and for error messages.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::units::format_duration;

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The line for one completed request: `200 OK  1.2 KiB  35ms  Download/Example.html`.
pub fn request_line(status: &str, bytes: u64, elapsed: Duration, path: &Path) -> String {
    format!(
        "{status}  {}  {}  {}",
        format_size(bytes),
        format_duration(elapsed),
        path.display()
    )
}

/// Writes a line to stdout. A closed stdout (`porter fetch ... | head`) is not an error worth a panic,
/// so write failures are ignored.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(5 << 30), "5.0 GiB");
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(
            request_line(
                "200 OK",
                12,
                Duration::from_millis(3),
                Path::new("Download/x")
            ),
            "200 OK  12 B  3ms  Download/x"
        );
    }
}
