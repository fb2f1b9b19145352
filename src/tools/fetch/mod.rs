//! `porter fetch URL`: fetches a URL directly or through a proxy, saves what it got, logs every
//! response, and with `--repeat` tallies the outcomes of many attempts.
//!
//! ```text
//!  attempt ─> proxy::Proxies::for_url ─> transport::open (TCP, CONNECT, TLS) ─> request ─> read_head
//!     │                                                                                  │
//!     │                              proxy's own 4xx/5xx (no Via) ─> error <─────────────┤
//!     │                                                                                  ├─> log
//!     │       -L and 301/302/303/307/308 with Location ─> one line, next hop (limited) <─┤
//!     │                 4xx/5xx without --save-errors ─> read through, not saved <───────┤
//!     │                                        otherwise ─> download: NAME.head or body ─┘
//!     └─> report one line (cache outcome too) ─> (repeat) tally ─> exit 0, 1 or 8
//! ```
//! HTTP itself (heads, framing, chunked) is `crate::http`'s; this module only drives it.

mod download;
mod entities;
mod error;
pub mod log;
pub mod naming;
pub mod proxy;
pub mod report;
mod save;
pub mod tally;
pub mod target;
mod tls;
mod transport;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use error::{EXIT_HTTP_ERROR, FetchError, Phase};
pub use proxy::{Credentials, NoProxy, Proxies, ProxyAddr};
pub use target::FetchUrl;

use crate::http::{self, Headers, RequestHead, ResponseHead, Scheme, Version};
use download::Kept;
use log::DownloadLog;
use report::Lines;
use tally::{Outcome, Tally};
use transport::Connection;

/// Sent as User-Agent, and in CONNECT requests.
pub const USER_AGENT: &str = concat!("porter/", env!("CARGO_PKG_VERSION"));
/// The statuses `-L` follows (RFC 9110 §15.4).
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

/// The request method: `porter fetch` reads, it does not change anything (the command line offers
/// GET and HEAD only).
pub use crate::http::Method;

/// Everything `porter fetch` runs with, validated by `cli`.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub url: FetchUrl,
    /// The proxies (from `--proxy` or the environment) and the hosts reached directly.
    pub proxies: Proxies,
    pub method: Method,
    /// Folder the downloads are saved in.
    pub out_dir: PathBuf,
    /// File each response's head is appended to.
    pub log: PathBuf,
    /// Time to connect, and for each wait for data.
    pub timeout: Duration,
    /// Write the body to stdout, and the request lines to stderr; nothing is saved or logged.
    pub print: bool,
    /// Save 4xx and 5xx responses too.
    pub save_errors: bool,
    /// Follow redirects (`-L`), at most `max_redirects` of them.
    pub follow: bool,
    pub max_redirects: u32,
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
            proxies: Proxies::default(),
            method: Method::Get,
            out_dir: PathBuf::from("Download"),
            log: PathBuf::from("download.log"),
            timeout: Duration::from_secs(10),
            print: false,
            save_errors: false,
            follow: false,
            max_redirects: 10,
            repeat: 1,
            interval: Duration::from_millis(500),
            cacert: None,
            insecure: false,
        }
    }
}

/// The final response of one attempt.
struct Fetched {
    status: u16,
    /// `200 OK`.
    status_line: String,
    bytes: u64,
    cache: Option<String>,
    kept: Kept,
}

/// Makes the attempts `config` asks for. A single attempt's failure is the error, and so is an
/// error status ([`EXIT_HTTP_ERROR`]); a `--repeat` run reports each failure as it happens, tallies
/// every outcome, and fails at the end if any attempt got no response or an error status.
pub fn run(config: FetchConfig) -> Result<(), FetchError> {
    let lines = if config.print {
        Lines::Stderr
    } else {
        Lines::Stdout
    };
    let mut tls = Tls::new(&config);
    // --print is for pipes: stdout gets the body and nothing lands on disk (no file, no log).
    let log = if config.print {
        DownloadLog::off()
    } else {
        DownloadLog::new(&config.log)
    };
    let repeat = config.repeat.max(1);
    let width = repeat.to_string().len();
    let mut tally = Tally::default();
    let mut error_statuses = 0;
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
        let say = |line: &str| lines.say(&format!("{prefix}{line}"));
        match attempt(&config, &mut tls, &log, started_at, &say) {
            Ok(fetched) => {
                let saved = match &fetched.kept {
                    Kept::Saved(path) => Some(path.as_path()),
                    Kept::NotSaved => None,
                };
                say(&report::request_line(
                    &fetched.status_line,
                    fetched.bytes,
                    clock.elapsed(),
                    fetched.cache.as_deref(),
                    saved,
                    config.print,
                ));
                tally.record(Outcome::Response(fetched.status_line.clone()));
                if fetched.status >= 400 {
                    if repeat == 1 {
                        let reason = fetched.status_line[3..].trim().to_string();
                        return Err(FetchError::HttpStatus {
                            status: fetched.status,
                            reason,
                        });
                    }
                    error_statuses += 1;
                }
            }
            Err(error) => {
                let logged = match &error {
                    FetchError::ProxyStatus { head, url, .. } => {
                        log.response(config.method.as_str(), url, started_at, head)
                    }
                    FetchError::Log { .. } => Ok(()),
                    _ => log.failure(config.method.as_str(), &config.url.url, started_at, &error),
                };
                if repeat == 1 {
                    return Err(error);
                }
                say(&error.to_string());
                if let Err(log_error) = logged {
                    say(&log_error.to_string());
                }
                tally.record(Outcome::Failure(error.kind()));
            }
        }
    }
    if repeat > 1 {
        lines.say(tally.render().trim_end());
        if tally.failures() > 0 {
            return Err(FetchError::Attempts {
                failed: tally.failures(),
                total: tally.total(),
            });
        }
        if error_statuses > 0 {
            return Err(FetchError::HttpStatuses {
                count: error_statuses,
                total: tally.total(),
            });
        }
    }
    Ok(())
}

/// The TLS configuration, built the first time an https URL needs it (a redirect may lead there).
struct Tls<'a> {
    config: &'a FetchConfig,
    built: Option<Arc<rustls::ClientConfig>>,
}

impl<'a> Tls<'a> {
    fn new(config: &'a FetchConfig) -> Self {
        Tls {
            config,
            built: None,
        }
    }

    fn for_url(
        &mut self,
        url: &FetchUrl,
    ) -> Result<Option<&Arc<rustls::ClientConfig>>, FetchError> {
        if url.scheme == Scheme::Http {
            return Ok(None);
        }
        if self.built.is_none() {
            let config = tls::client_config(self.config.cacert.as_deref(), self.config.insecure)?;
            self.built = Some(config);
        }
        Ok(self.built.as_ref())
    }
}

/// One attempt: each hop connects, sends, reads the head and logs it; the last is saved or read.
fn attempt(
    config: &FetchConfig,
    tls: &mut Tls,
    log: &DownloadLog,
    started_at: SystemTime,
    say: &dyn Fn(&str),
) -> Result<Fetched, FetchError> {
    let timeout = config.timeout;
    let mut url = config.url.clone();
    let mut hops = 0;
    loop {
        let proxy = config.proxies.for_url(&url);
        let mut conn = transport::open(&url, proxy, tls.for_url(&url)?, timeout)?;
        send_request(&mut conn, config, &url, proxy)?;
        let head = transport::read_head(
            &mut conn.stream,
            &mut conn.buf,
            &conn.peer,
            Phase::ReadHead,
            timeout,
        )?;
        // A proxy must add Via to what it forwards (RFC 9110 §7.6.3): an error without one is the
        // proxy's.
        if conn.absolute_form && head.status >= 400 && !head.headers.contains("via") {
            return Err(transport::proxy_error(
                &conn.peer,
                head,
                &mut conn.buf,
                &mut conn.stream,
                &config.method,
                &url.url,
            ));
        }
        log.response(config.method.as_str(), &url.url, started_at, &head)?;
        let status_line = format!("{} {}", head.status, head.reason)
            .trim_end()
            .to_string();
        let location = head
            .headers
            .get("location")
            .filter(|l| !l.trim().is_empty());
        if let (true, true, Some(location)) =
            (config.follow, REDIRECTS.contains(&head.status), location)
        {
            let next = url.join(location)?;
            if hops == config.max_redirects {
                return Err(FetchError::TooManyRedirects {
                    limit: config.max_redirects,
                    url: next.url,
                });
            }
            say(&format!("{status_line}  -> {}", next.url));
            hops += 1;
            url = next;
            continue;
        }
        return finish(config, &url, head, status_line, &mut conn);
    }
}

/// Saves (or only reads) the final response.
fn finish(
    config: &FetchConfig,
    url: &FetchUrl,
    head: ResponseHead,
    status_line: String,
    conn: &mut Connection,
) -> Result<Fetched, FetchError> {
    let keep = !config.print && (head.status < 400 || config.save_errors);
    let (bytes, kept) = match config.method {
        Method::Head => download::head(url, &head, &config.out_dir, keep, config.print)?,
        _ => download::body(
            url,
            &head,
            conn,
            &config.out_dir,
            keep,
            config.print,
            config.timeout,
        )?,
    };
    Ok(Fetched {
        status: head.status,
        status_line,
        bytes,
        cache: report::cache_outcome(&head.headers),
        kept,
    })
}

fn send_request(
    conn: &mut Connection,
    config: &FetchConfig,
    url: &FetchUrl,
    proxy: Option<&ProxyAddr>,
) -> Result<(), FetchError> {
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
    // Through a tunnel the proxy never sees this request: its credentials went with CONNECT.
    if conn.absolute_form
        && let Some(credentials) = proxy.and_then(|p| p.credentials.as_ref())
    {
        head.headers
            .append("Proxy-Authorization", credentials.header_value());
    }
    head.headers.append("Connection", "close");
    let mut bytes = Vec::with_capacity(256);
    http::write::request_head(&mut bytes, &head);
    conn.stream
        .write_all(&bytes)
        .and_then(|()| conn.stream.flush())
        .map_err(|e| FetchError::from_io(e, &conn.peer, Phase::SendRequest, config.timeout))
}
