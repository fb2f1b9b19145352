//! `porter serve`: the origin web server the proxy's users test against. A file server that tracks
//! visitors with cookies and bans abusive clients, a `/` that answers a client's Nth request
//! specially, and an unreliable `/getbalance` that fails on purpose and logs every outcome. It runs on
//! the same listener, worker pool and event loops as the proxy ([`crate::net::Server`]).
//!
//! ```text
//!  head ─┬─ parse error ──────────────────> 400/414/431/505, close
//!        ├─ limits: banned address, or this request trips the rule ─> 403 ban page, close
//!        ├─ visitor: count the visit (known cookie) or mint one (Set-Cookie); X-Visit-Count
//!        ├─ not GET or HEAD ──────────────> 405, Allow: GET, HEAD
//!        ├─ /getbalance ──> fault draw ──> 200 | 403 | 500 | held, then closed; event logged
//!        ├─ /getlogs ─────────────────────> the event log as a JSON array
//!        ├─ / from the address's Nth request on ─> the center of the pop
//!        └─ anything else ────────────────> files::serve under --root
//! ```
//! State lives in one value per concern, each behind its own lock: `cookies` (visitors, saved to
//! disk), `limits` (per-address counts and bans), `faults` (the seeded draw), `events` (the log file)
//! and `hold` (connections kept open by the timeout fault).

pub mod conditional;
pub mod cookies;
mod error;
pub mod events;
pub mod export;
pub mod faults;
pub mod files;
pub mod hidden;
pub mod hold;
pub mod limits;
mod pages;
pub mod path;
pub mod reply;

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use error::ServeError;
use events::{Event, EventLog};
use faults::{FaultMix, Faults, Outcome};
use hidden::Hidden;
use hold::Holder;
use limits::{Admit, LimitConfig, Limits};
use reply::{Exchange, Reply};

use crate::http::{self, Limits as HttpLimits, Method, RequestHead, Version};
use crate::net::acl::Cidr;
use crate::net::{Conn, Handler, Server, ServerConfig, Shutdown};
use cookies::{Saver, VisitorStore};

/// Everything `porter serve` is configured with. Built by `cli`, validated there, then shared.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The listener, worker pool, connection caps and client timeouts; an origin server admits every
    /// client network by default (`server.allow`).
    pub server: ServerConfig,
    /// The folder whose files are served.
    pub root: PathBuf,
    /// Where visitors are saved (JSON).
    pub cookies: PathBuf,
    /// Where `/getbalance` outcomes are appended (JSON lines).
    pub event_log: PathBuf,
    /// The event log's cap: past it, it is rotated to `NAME.1`.
    pub event_log_max: u64,
    /// Serve paths with a segment that starts with a dot (never the state files).
    pub allow_dotfiles: bool,
    /// From a client address's Nth request on, `/` is the special page; 0 turns it off.
    pub special_after: u64,
    /// The ban rule.
    pub limits: LimitConfig,
    /// The `/getbalance` outcome shares.
    pub faults: FaultMix,
    /// How long a timed-out `/getbalance` connection is held before it is closed.
    pub fault_delay: Duration,
    /// Most connections held by the timeout fault at once.
    pub max_held: usize,
    /// Seed of the fault sequence; `None` picks a random one (and logs it).
    pub seed: Option<u64>,
    /// How often changed visitors are saved.
    pub save_every: Duration,
    /// Freshness given to files (`Cache-Control: max-age`), so caches in front can serve them.
    pub max_age: Duration,
    /// `--tls`: serve HTTPS with a leaf from a local CA; `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
}

/// `--tls`, `--tls-ca-dir` and `--tls-name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA folder (created, as `porter ca init` would, if it holds no CA).
    pub ca_dir: PathBuf,
    /// Every name the leaf is valid for: the loopback names, the listen address, each `--tls-name`.
    pub names: Vec<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            server: ServerConfig {
                name: "serve",
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                workers: 5,
                queue: 1024,
                max_connections: 4096,
                max_connections_per_client: 256,
                allow: any_address(),
                limits: HttpLimits::default(),
                head_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                client_timeout: Duration::from_secs(30),
                shutdown_grace: Duration::from_secs(10),
                accept_proxy_protocol: false,
                proxy_protocol_from: Vec::new(),
            },
            root: PathBuf::from("."),
            cookies: PathBuf::from("cookies.json"),
            event_log: PathBuf::from("server.log"),
            event_log_max: events::DEFAULT_MAX_BYTES,
            allow_dotfiles: false,
            special_after: 50,
            limits: LimitConfig::default(),
            faults: FaultMix::default(),
            fault_delay: Duration::from_secs(15),
            max_held: hold::DEFAULT_CAP,
            seed: None,
            save_every: Duration::from_secs(5),
            max_age: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// Every IPv4 and IPv6 client: the default allow list of an origin server.
pub fn any_address() -> Vec<Cidr> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Binds, prints `listening on ADDR`, serves until SIGINT/SIGTERM, then saves the visitors.
pub fn run(config: ServeConfig) -> Result<(), ServeError> {
    let shutdown = Shutdown::new();
    let server = Server::bind(config.server.clone(), shutdown.clone())
        .map_err(|e| ServeError::Listen(config.server.listen, e))?;
    let origin = Arc::new(Origin::new(config.clone())?);
    let local_addr = server.local_addr()?;
    println!("listening on {local_addr}");
    io::stdout().flush()?;
    log::info!(
        "serving {} (visitors in {}, events in {}); fault mix {}, seed {} (repeat with --seed)",
        origin.root.display(),
        config.cookies.display(),
        config.event_log.display(),
        config.faults,
        origin.seed
    );
    for inside in origin.hidden.inside(&origin.root) {
        log::warn!(
            "{} is inside --root {}; it is never served, but keeping the server's state outside \
             the served folder is safer (--cookies, --event-log, --tls-ca-dir)",
            inside.display(),
            origin.root.display()
        );
    }
    shutdown.install_signal_handlers()?;
    let saver = Saver::start(Arc::clone(&origin.visitors), config.save_every)?;
    let served = server.run(Arc::clone(&origin));
    crate::access_log::flush();
    saver.stop();
    origin.holder.stop();
    let saved = origin.visitors.save();
    served?;
    if saved? {
        log::info!("visitors saved to {}", config.cookies.display());
    }
    log::info!("serve stopped");
    Ok(())
}

/// Loads or creates the CA and mints the server's leaf, saying how clients trust it.
fn start_tls(settings: &TlsSettings) -> Result<crate::net::ServerTls, ServeError> {
    let tls = crate::tls::serve::ServeTls::start(&settings.ca_dir, &settings.names)
        .map_err(ServeError::Tls)?;
    let cert = tls.ca.cert_path();
    if tls.created {
        log::warn!(
            "created a new CA in {} for --tls; clients must trust {} (fingerprint {}), for \
             example `curl --cacert {}` or `porter proxy --upstream-ca {}`",
            settings.ca_dir.display(),
            cert.display(),
            tls.ca.fingerprint(),
            cert.display(),
            cert.display()
        );
    }
    log::info!(
        "serving HTTPS for {} with a certificate from the CA {} (fingerprint {})",
        tls.names.join(", "),
        cert.display(),
        tls.ca.fingerprint()
    );
    Ok((tls.config, Arc::new(crate::tls::TlsStats::default())))
}

/// The origin server's shared state, one per process, used by every worker.
pub struct Origin {
    config: ServeConfig,
    /// `--root`, canonical, so resolved paths can be checked against it.
    root: PathBuf,
    seed: u64,
    visitors: Arc<VisitorStore>,
    limits: Limits,
    faults: Faults,
    holder: Holder,
    events: EventLog,
    /// The state files and, unless allowed, dotfiles: never served.
    hidden: Hidden,
    /// `--tls`: what every connection's handshake uses.
    tls: Option<crate::net::ServerTls>,
}

impl Origin {
    /// Checks the root, loads the visitors, opens the event log and starts the holder thread.
    pub fn new(config: ServeConfig) -> Result<Origin, ServeError> {
        let root = config
            .root
            .canonicalize()
            .and_then(|root| {
                if root.is_dir() {
                    Ok(root)
                } else {
                    Err(io::Error::new(io::ErrorKind::NotADirectory, "not a folder"))
                }
            })
            .map_err(|e| ServeError::Root(config.root.clone(), e))?;
        let visitors = Arc::new(VisitorStore::load(&config.cookies)?);
        // Writes a new (or replaced corrupt) file now, so an unwritable --cookies fails at start.
        visitors.save()?;
        let events = EventLog::open(&config.event_log, config.event_log_max)
            .map_err(|e| ServeError::EventLog(config.event_log.clone(), e))?;
        let tls = match &config.tls {
            Some(settings) => Some(start_tls(settings)?),
            None => None,
        };
        // The CA's key is a state file too: never served, even with --tls-ca-dir inside --root.
        let ca_key = config
            .tls
            .as_ref()
            .map(|t| t.ca_dir.join(crate::tls::ca::KEY_FILE));
        let mut state: Vec<&std::path::Path> = vec![&config.cookies, &config.event_log];
        state.extend(ca_key.as_deref());
        let hidden = Hidden::new(&state, config.allow_dotfiles);
        let seed = config.seed.unwrap_or_else(random_seed);
        let holder = Holder::start(config.fault_delay, config.max_held)?;
        Ok(Origin {
            limits: Limits::new(config.limits.clone()),
            faults: Faults::new(config.faults, seed),
            config,
            root,
            seed,
            visitors,
            holder,
            events,
            hidden,
            tls,
        })
    }

    fn handle_request(&self, conn: Conn, req: RequestHead) -> Option<Conn> {
        let ip = conn.peer.ip().to_canonical();
        let now = Instant::now();
        let mut exchange = Exchange {
            version: req.version,
            keep_alive: req.keep_alive(),
            head_only: req.method == Method::Head,
        };
        match http::body::request_mode(&req.headers) {
            // This server reads no request body, so a connection that sent one cannot be reused.
            Ok(mode) => exchange.keep_alive &= mode == http::body::BodyMode::NoBody,
            Err(e) => {
                exchange.keep_alive = false;
                let reply = Reply::error(e.client_status(), e.as_str());
                return self.finish(conn, &req, reply, &exchange);
            }
        }
        let cookie = cookies::cookie_id(&req.headers).filter(|id| self.visitors.knows(id));
        let nth = match self.limits.admit(ip, cookie, now) {
            Admit::Allowed { nth } => nth,
            Admit::Banned { ban, .. } => {
                exchange.keep_alive = false;
                return self.finish(conn, &req, pages::banned(ip, &ban, now), &exchange);
            }
        };
        let visitor = self.visitor(ip, cookie, now);
        let path = path::target_path(&req.target);
        let reply = if req.method != Method::Get && req.method != Method::Head {
            Reply::error(405, "this server answers GET and HEAD only").header("Allow", "GET, HEAD")
        } else if path == "/getbalance" {
            return self.balance(conn, &req, visitor, &exchange);
        } else if path == "/getlogs" {
            // Streamed: without chunked coding (HTTP/1.0), only the close can end it.
            exchange.keep_alive &= req.version == Version::Http11;
            pages::logs(&req.target, &self.events)
        } else if path == "/" && self.config.special_after > 0 && nth >= self.config.special_after {
            pages::center_of_the_pop(nth)
        } else {
            let reply = files::serve(&self.root, &self.hidden, &req, path);
            match reply.status() {
                200 | 206 | 304 => reply.header(
                    "Cache-Control",
                    format!("max-age={}", self.config.max_age.as_secs()),
                ),
                _ => reply,
            }
        };
        self.finish(conn, &req, visitor.decorate(reply), &exchange)
    }

    /// Counts the visit of a known visitor, or mints a new one if the address may have another.
    fn visitor(&self, ip: IpAddr, known: Option<&str>, now: Instant) -> VisitorHeaders {
        let wall = SystemTime::now();
        if let Some(visits) = known.and_then(|id| self.visitors.visit(id, wall)) {
            return VisitorHeaders {
                visits: Some(visits),
                new_id: None,
            };
        }
        if !self.limits.may_mint(ip, now) {
            log::debug!("{ip} has had its share of new visitor cookies for now");
            return VisitorHeaders::default();
        }
        match self.visitors.mint(wall) {
            Ok(id) => VisitorHeaders {
                visits: Some(1),
                new_id: Some(id),
            },
            Err(e) => {
                log::warn!("{e}");
                VisitorHeaders::default()
            }
        }
    }

    /// `/getbalance`: draws an outcome, logs it, and answers or holds the connection.
    fn balance(
        &self,
        conn: Conn,
        req: &RequestHead,
        visitor: VisitorHeaders,
        exchange: &Exchange,
    ) -> Option<Conn> {
        let draw = self.faults.draw();
        let ip = conn.peer.ip().to_canonical();
        let event = Event {
            timestamp: crate::timefmt::rfc3339(SystemTime::now()),
            client_ip: ip.to_string(),
            path: events::logged_target(&req.target),
            outcome: draw.outcome.as_str().to_string(),
        };
        if let Err(e) = self.events.append(&event) {
            log::warn!(
                "cannot append to event log {}: {e}",
                self.events.path().display()
            );
        }
        if draw.outcome == Outcome::Timeout {
            let peer = conn.peer;
            crate::access_log::write(format!("{peer} {} {} timeout 0", req.method, req.target));
            let (stream, _unread, slot) = conn.into_parts();
            if let Some(stream) = stream.into_tcp() {
                self.holder.hold(stream, peer, slot);
            }
            return None;
        }
        self.finish(conn, req, visitor.decorate(pages::balance(&draw)), exchange)
    }

    /// Sends the reply, logs the exchange, and returns the connection if it stays open.
    fn finish(
        &self,
        mut conn: Conn,
        req: &RequestHead,
        reply: Reply,
        exchange: &Exchange,
    ) -> Option<Conn> {
        let status = reply.status();
        match reply::send(&mut conn.stream, reply, exchange) {
            Ok(bytes) => {
                crate::access_log::write(format!(
                    "{} {} {} {status} {bytes}",
                    conn.peer, req.method, req.target
                ));
                exchange.keep_alive.then_some(conn)
            }
            Err(e) => {
                // A client that hangs up mid-response is an everyday event, not an error.
                log::debug!("{} {} {}: {e}", conn.peer, req.method, req.target);
                None
            }
        }
    }
}

/// What the response tells the visitor about itself.
#[derive(Debug, Default)]
struct VisitorHeaders {
    visits: Option<u64>,
    /// Set when this request minted the visitor.
    new_id: Option<String>,
}

impl VisitorHeaders {
    /// Adds the visitor's fields. Whatever carries them is one visitor's, so a shared cache must
    /// never hand it to another: the field-named no-cache (RFC 9111 §5.2.2.4) lets a cache keep and
    /// reuse the body without those fields. Pages that are no-store need nothing more.
    fn decorate(&self, mut reply: Reply) -> Reply {
        if self.visits.is_none() && self.new_id.is_none() {
            return reply;
        }
        if !reply.head.headers.has_token("cache-control", "no-store") {
            let cache_control = reply.head.headers.clone_value("cache-control");
            let mut value = String::from_utf8_lossy(&cache_control).into_owned();
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str("no-cache=\"Set-Cookie, X-Visit-Count\"");
            reply.head.headers.set("Cache-Control", value);
        }
        if let Some(visits) = self.visits {
            reply = reply.header("X-Visit-Count", visits.to_string());
        }
        if let Some(id) = &self.new_id {
            reply = reply.header("Set-Cookie", cookies::set_cookie(id));
        }
        reply
    }
}

impl Handler for Origin {
    fn tls(&self) -> Option<crate::net::ServerTls> {
        self.tls.clone()
    }

    fn handle(&self, conn: Conn, request: Result<RequestHead, http::Error>) -> Option<Conn> {
        match request {
            Ok(req) => self.handle_request(conn, req),
            Err(error) => {
                log::debug!("{}: {error}", conn.peer);
                let req = RequestHead {
                    method: "-".into(),
                    target: "-".into(),
                    version: Version::Http11,
                    headers: http::Headers::new(),
                };
                let exchange = Exchange {
                    version: Version::Http11,
                    keep_alive: false,
                    head_only: false,
                };
                let reply = Reply::error(error.client_status(), error.as_str());
                self.finish(conn, &req, reply, &exchange)
            }
        }
    }

    fn refused(&self, peer: SocketAddr, status: u16, why: &str) {
        log::warn!("refused {peer} with {status}: {why}");
    }
}

/// A seed from the operating system, or the clock if it has none to give.
fn random_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    })
}
