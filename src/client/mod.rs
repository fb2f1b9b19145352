//! `porter fetch URL`: fetches a URL directly or through a proxy, saves what it got, logs every
//! response, and with `--repeat` tallies the outcomes of many attempts.
//!
//! ```text
//!  attempt ─> transport::open (TCP, CONNECT, TLS) ─> request ─> read_head
//!     │                                                           │
//!     │                proxy's own 4xx/5xx (no Via) ─> error <────┤
//!     │                                                           ├─> log::response
//!     │                               HEAD: save the head  <──────┤
//!     │                               GET: stream the body ─> save::PartFile ─> naming ─> final name
//!     └─> report one line ─> (repeat) tally
//! ```
//! HTTP itself (heads, framing, chunked) is `crate::http`'s; this module only drives it.

mod entities;
mod error;
pub mod log;
pub mod naming;
pub mod report;
mod save;
pub mod tally;
pub mod target;
mod tls;
mod transport;

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use error::{FetchError, Phase};
pub use target::{FetchUrl, ProxyAddr, Scheme};

use crate::http::body::{BodyMode, BodyReader};
use crate::http::{self, Headers, RequestHead, ResponseHead, Version};
use log::DownloadLog;
use save::PartFile;
use tally::{Outcome, Tally};
use transport::Connection;

/// Sent as User-Agent, and in CONNECT requests.
pub const USER_AGENT: &str = concat!("porter/", env!("CARGO_PKG_VERSION"));
/// How much of the start of a body is kept to find an HTML title in.
const SNIFF_BYTES: usize = 64 * 1024;
/// Bodies at least this large (or of unknown length) get a progress bar on a terminal.
const PROGRESS_FROM_BYTES: u64 = 1 << 20;

/// The request method: `porter fetch` reads, it does not change anything (the command line offers
/// GET and HEAD only).
pub use crate::http::Method;

/// Everything `porter fetch` runs with, validated by `cli`.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub url: FetchUrl,
    /// Proxy for this URL (from `--proxy` or the environment); `None` connects directly.
    pub proxy: Option<ProxyAddr>,
    pub method: Method,
    /// Folder the downloads are saved in.
    pub out_dir: PathBuf,
    /// File each response's head is appended to.
    pub log: PathBuf,
    /// Time to connect, and for each wait for data.
    pub timeout: Duration,
    /// Write the body to stdout as well.
    pub print: bool,
    /// Attempts to make; more than one ends with a tally.
    pub repeat: u32,
    /// Pause between attempts.
    pub interval: Duration,
    /// Extra trusted certificate(s) for https, in PEM.
    pub cacert: Option<PathBuf>,
    /// Accept any certificate for https.
    pub insecure: bool,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            url: FetchUrl {
                scheme: Scheme::Http,
                host: "localhost".to_string(),
                port: 80,
                path_and_query: "/".to_string(),
                path: "/".to_string(),
                url: "http://localhost/".to_string(),
            },
            proxy: None,
            method: Method::Get,
            out_dir: PathBuf::from("Download"),
            log: PathBuf::from("download.log"),
            timeout: Duration::from_secs(10),
            print: false,
            repeat: 1,
            interval: Duration::from_millis(500),
            cacert: None,
            insecure: false,
        }
    }
}

/// A response that was saved.
struct Saved {
    /// `200 OK`.
    status: String,
    bytes: u64,
    path: PathBuf,
}

/// Makes the attempts `config` asks for. A single attempt's failure is the error; a `--repeat` run
/// reports each failure as it happens and fails at the end if any attempt got no response.
pub fn run(config: FetchConfig) -> Result<(), FetchError> {
    let tls = match config.url.scheme {
        Scheme::Https => Some(tls::client_config(
            config.cacert.as_deref(),
            config.insecure,
        )?),
        Scheme::Http => None,
    };
    let log = DownloadLog::new(&config.log);
    let repeat = config.repeat.max(1);
    let width = repeat.to_string().len();
    let mut tally = Tally::default();
    for n in 1..=repeat {
        if n > 1 && !config.interval.is_zero() {
            std::thread::sleep(config.interval);
        }
        let prefix = if repeat > 1 {
            format!("[{n:>width$}/{repeat}] ")
        } else {
            String::new()
        };
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let result = attempt(&config, tls.as_ref(), &log, started_at);
        match result {
            Ok(saved) => {
                report::say(&format!(
                    "{prefix}{}",
                    report::request_line(&saved.status, saved.bytes, clock.elapsed(), &saved.path)
                ));
                tally.record(Outcome::Response(saved.status));
            }
            Err(error) => {
                let logged = match &error {
                    FetchError::ProxyStatus { head, .. } => {
                        log.response(config.method.as_str(), &config.url.url, started_at, head)
                    }
                    FetchError::Log { .. } => Ok(()),
                    _ => log.failure(config.method.as_str(), &config.url.url, started_at, &error),
                };
                if repeat == 1 {
                    return Err(error);
                }
                report::say(&format!("{prefix}{error}"));
                if let Err(log_error) = logged {
                    report::say(&format!("{prefix}{log_error}"));
                }
                tally.record(Outcome::Failure(error.kind()));
            }
        }
    }
    if repeat > 1 {
        report::say(tally.render().trim_end());
        if tally.failures() > 0 {
            return Err(FetchError::Attempts {
                failed: tally.failures(),
                total: tally.total(),
            });
        }
    }
    Ok(())
}

/// One request: connect, send, read the head, log it, save the head or the body.
fn attempt(
    config: &FetchConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    log: &DownloadLog,
    started_at: SystemTime,
) -> Result<Saved, FetchError> {
    let url = &config.url;
    let timeout = config.timeout;
    let mut conn = transport::open(url, config.proxy.as_ref(), tls, timeout)?;
    send_request(&mut conn, config)?;
    let head = transport::read_head(
        &mut conn.stream,
        &mut conn.buf,
        &conn.peer,
        Phase::ReadHead,
        timeout,
    )?;
    // A proxy must add Via to what it forwards (RFC 9110 §7.6.3): an error without one is the proxy's.
    if conn.absolute_form && head.status >= 400 && !head.headers.contains("via") {
        let method = &config.method;
        return Err(transport::proxy_error(
            &conn.peer,
            head,
            &mut conn.buf,
            &mut conn.stream,
            method,
        ));
    }
    log.response(config.method.as_str(), &url.url, started_at, &head)?;
    let status = format!("{} {}", head.status, head.reason)
        .trim_end()
        .to_string();
    let (bytes, path) = match config.method {
        Method::Head => save_head(config, &head)?,
        _ => save_body(config, &head, &mut conn)?,
    };
    Ok(Saved {
        status,
        bytes,
        path,
    })
}

fn send_request(conn: &mut Connection, config: &FetchConfig) -> Result<(), FetchError> {
    let url = &config.url;
    let mut head = RequestHead {
        method: config.method.clone(),
        target: if conn.absolute_form {
            url.url.clone()
        } else {
            url.path_and_query.clone()
        },
        version: Version::Http11,
        headers: Headers::new(),
    };
    head.headers.append("Host", url.host_header());
    head.headers.append("User-Agent", USER_AGENT);
    head.headers.append("Accept", "*/*");
    head.headers.append("Connection", "close");
    let mut bytes = Vec::with_capacity(256);
    http::write::request_head(&mut bytes, &head);
    conn.stream
        .write_all(&bytes)
        .and_then(|()| conn.stream.flush())
        .map_err(|e| FetchError::from_io(e, &conn.peer, Phase::SendRequest, config.timeout))
}

/// HEAD: the status line and header fields, saved under the name a GET would most likely use. The
/// title of an HTML page is unknown without its body, so such a page gets its host-and-path name.
fn save_head(config: &FetchConfig, head: &ResponseHead) -> Result<(u64, PathBuf), FetchError> {
    let name = if naming::is_html(&head.headers, b"") {
        naming::html_name(None, &config.url)
    } else {
        naming::path_name(&config.url)
    };
    let mut text = Vec::with_capacity(512);
    http::write::response_head(&mut text, head);
    let mut part = PartFile::create(&config.out_dir, &name)?;
    part.write(&text)?;
    let path = part.finish(&name)?;
    if config.print {
        let _ = io::stdout().lock().write_all(&text);
    }
    Ok((text.len() as u64, path))
}

/// GET: streams the body to a temp file, keeping its start to find the title in, then names it.
fn save_body(
    config: &FetchConfig,
    head: &ResponseHead,
    conn: &mut Connection,
) -> Result<(u64, PathBuf), FetchError> {
    let url = &config.url;
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
    let mut part = PartFile::create(&config.out_dir, &hint)?;
    let progress = progress_bar(expected);
    let mut print = config.print;
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
                return Err(body_error(e, got, expected, &conn.peer, config.timeout));
            }
        };
        let data = &chunk[..n];
        part.write(data)?;
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
    let name = if naming::is_html(&head.headers, &sniff) {
        let title = naming::title(&sniff, naming::charset(&head.headers));
        naming::html_name(title.as_deref(), url)
    } else {
        hint
    };
    Ok((got, part.finish(&name)?))
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
