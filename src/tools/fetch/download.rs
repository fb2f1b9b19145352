//! What `porter fetch` does with a final response: save it under its name, or (an error page
//! without `--save-errors`) only read it through; `--print` copies the body to stdout and saves
//! nothing.
//!
//! ```text
//!  HEAD ─────────────> the status line and fields, as NAME.head (the name a GET would use)
//!  GET, kept ────────> body ─> save::PartFile ─> naming (title or URL) ─> final name
//!  GET, not kept ────> body read and counted, nothing written
//! ```

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::error::{FetchError, Phase};
use super::naming;
use super::save::PartFile;
use super::target::FetchUrl;
use super::transport::Connection;
use crate::http::body::{BodyMode, BodyReader};
use crate::http::{self, Method, ResponseHead};

/// How much of the start of a body is kept to find an HTML title in.
const SNIFF_BYTES: usize = 64 * 1024;
/// Bodies at least this large (or of unknown length) get a progress bar on a terminal.
const PROGRESS_FROM_BYTES: u64 = 1 << 20;

/// What became of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Saved at this path.
    Saved(PathBuf),
    /// Read and counted, not saved (an error page without `--save-errors`).
    NotSaved,
}

/// The name a HEAD response is saved under: what a GET would use, with `.head` after it, so the
/// file says what it holds (`porter.png.head` is text, not an image). An HTML page's title is
/// unknown without its body, so such a page gets its host-and-path name.
pub fn head_name(url: &FetchUrl, head: &ResponseHead) -> String {
    let name = if naming::is_html(&head.headers, b"") {
        naming::html_name(None, url)
    } else {
        naming::path_name(url)
    };
    format!("{name}.head")
}

/// HEAD: the status line and header fields as text. Returns the bytes and what was kept.
pub fn head(
    url: &FetchUrl,
    head: &ResponseHead,
    out_dir: &std::path::Path,
    keep: bool,
    print: bool,
) -> Result<(u64, Kept), FetchError> {
    let mut text = Vec::with_capacity(512);
    http::write::response_head(&mut text, head);
    if print {
        let _ = io::stdout().lock().write_all(&text);
    }
    if !keep {
        return Ok((text.len() as u64, Kept::NotSaved));
    }
    let name = head_name(url, head);
    let mut part = PartFile::create(out_dir, &name)?;
    part.write(&text)?;
    Ok((text.len() as u64, Kept::Saved(part.finish(&name)?)))
}

/// GET: streams the body to a temp file (when `keep`), keeping its start to find the title in,
/// then names it; `print` copies it to stdout.
pub fn body(
    url: &FetchUrl,
    head: &ResponseHead,
    conn: &mut Connection,
    out_dir: &std::path::Path,
    keep: bool,
    print: bool,
    timeout: Duration,
) -> Result<(u64, Kept), FetchError> {
    let mode =
        http::body::response_mode(&Method::Get, head.status, &head.headers).map_err(|error| {
            FetchError::BadResponse {
                peer: conn.peer.clone(),
                error,
            }
        })?;
    let expected = match mode {
        BodyMode::Length(n) => Some(n),
        BodyMode::NoBody => Some(0),
        BodyMode::Chunked | BodyMode::CloseDelimited => None,
    };
    let hint = naming::path_name(url);
    let mut part = if keep {
        Some(PartFile::create(out_dir, &hint)?)
    } else {
        None
    };
    let progress = progress_bar(expected);
    let mut print = print;
    let mut stdout = io::stdout().lock();
    let mut reader = BodyReader::new(mode, &mut conn.buf, &mut conn.stream);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sniff = Vec::new();
    let mut got: u64 = 0;
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                progress.abandon();
                return Err(body_error(e, got, expected, &conn.peer, timeout));
            }
        };
        let data = &chunk[..n];
        if let Some(part) = part.as_mut() {
            part.write(data)?;
        }
        if sniff.len() < SNIFF_BYTES {
            sniff.extend_from_slice(&data[..n.min(SNIFF_BYTES - sniff.len())]);
        }
        // A closed stdout (`| head`) stops the printing, not the download.
        if print && stdout.write_all(data).is_err() {
            print = false;
        }
        got += n as u64;
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    let _ = stdout.flush();
    drop(stdout);
    if expected.is_some_and(|n| n != got) {
        return Err(FetchError::Truncated { got, expected });
    }
    let Some(part) = part else {
        return Ok((got, Kept::NotSaved));
    };
    let name = if naming::is_html(&head.headers, &sniff) {
        let title = naming::title(&sniff, naming::charset(&head.headers));
        naming::html_name(title.as_deref(), url)
    } else {
        hint
    };
    Ok((got, Kept::Saved(part.finish(&name)?)))
}

fn body_error(
    error: io::Error,
    got: u64,
    expected: Option<u64>,
    peer: &str,
    timeout: Duration,
) -> FetchError {
    let truncated = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<http::Error>())
        .is_some_and(|e| *e == http::Error::Truncated);
    if truncated {
        FetchError::Truncated { got, expected }
    } else {
        FetchError::from_io(error, peer, Phase::ReadBody, timeout)
    }
}

/// A progress bar on stderr for long downloads when stderr is a terminal; otherwise a hidden one.
fn progress_bar(expected: Option<u64>) -> ProgressBar {
    let long = expected.is_none_or(|n| n >= PROGRESS_FROM_BYTES);
    if !long || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match expected {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_named_for_what_it_holds() {
        let mut head = ResponseHead::new(200);
        head.headers.append("Content-Type", "image/png");
        let url = FetchUrl::parse("http://h/img/porter.png").unwrap();
        assert_eq!(head_name(&url, &head), "porter.png.head");
        let mut page = ResponseHead::new(200);
        page.headers.append("Content-Type", "text/html");
        let url = FetchUrl::parse("http://h/docs/").unwrap();
        assert!(head_name(&url, &page).ends_with(".html.head"));
    }
}
