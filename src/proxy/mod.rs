//! `porter proxy`: the forward proxy. A request goes through these steps, in this file:
//!
//! ```text
//!  head ─┬─ parse error ───────────────> 400/414/431/505, close
//!        ├─ CONNECT host:port ─────────> tunnel (port and host rules, then the relay thread)
//!        ├─ origin-form (/path) ───────> the proxy's own pages
//!        └─ absolute-form http://… ─┬─> deny-host rule -> 403
//!                                   ├─> cache (lookup, store, revalidate)
//!                                   └─> forward to the origin, stream back
//! ```

pub mod auth;
mod cached;
mod config;
mod connect;
pub mod dest;
mod error;
pub mod forward;
pub mod metrics;
pub mod origin;
pub mod pages;
pub mod target;
mod tunnel;

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub use config::ProxyConfig;
pub use error::ProxyError;
use metrics::{AccessEntry, Metrics, Outcome};
use origin::OriginPool;
use target::Target;
use tunnel::TunnelHandle;

use crate::cache::CacheWriter;
use crate::cache::{self, Cache, CacheConfig};
use crate::http::{self, Limits, RequestHead, ResponseHead};
use crate::net::acl::Cidr;
use crate::net::{Conn, Handler, Server, ServerConfig, ServerStats, Shutdown};

/// Binds, prints `listening on ADDR`, and proxies until SIGINT/SIGTERM.
pub fn run(config: ProxyConfig) -> io::Result<()> {
    let shutdown = Shutdown::new();
    let listen = config.listen;
    let server = Server::bind(server_config(&config), shutdown.clone())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let local_addr = server.local_addr()?;
    println!("listening on {local_addr}");
    io::stdout().flush()?;
    if !local_addr.ip().is_loopback() && config.allow == Cidr::loopback() {
        log::info!(
            "listening on {local_addr} but only loopback clients are allowed; use --allow CIDR"
        );
    }
    if config
        .allow
        .iter()
        .any(|c| c.contains(IpAddr::from([8, 8, 8, 8])))
    {
        log::warn!("--allow admits public addresses: this is an open proxy");
    }
    shutdown.install_signal_handlers()?;
    let proxy = Proxy::new(config, local_addr, server.stats(), shutdown.clone())?;
    server.run(Arc::new(proxy))?;
    crate::access_log::flush();
    log::info!("proxy stopped");
    Ok(())
}

fn server_config(config: &ProxyConfig) -> ServerConfig {
    ServerConfig {
        name: "proxy",
        listen: config.listen,
        workers: config.workers,
        queue: config.queue,
        max_connections: config.max_connections,
        max_connections_per_client: config.max_connections_per_client,
        allow: config.allow.clone(),
        limits: Limits::default(),
        head_timeout: config.head_timeout,
        idle_timeout: config.idle_timeout,
        client_timeout: config.client_timeout,
        shutdown_grace: config.shutdown_grace,
    }
}

/// The proxy's shared state, one per process, used by every worker.
pub struct Proxy {
    pub config: ProxyConfig,
    pub local_addr: SocketAddr,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    pub server_stats: Arc<ServerStats>,
    origins: OriginPool,
    tunnels: TunnelHandle,
    /// This proxy's name in Via, unique per process so a forwarding loop is recognisable.
    via: String,
    limits: Limits,
    pub cache: Option<Cache>,
}

/// An origin response whose head has arrived; its body is still on the connection.
struct Fetched {
    origin: origin::OriginConn,
    head: ResponseHead,
    mode: http::body::BodyMode,
    request_time: SystemTime,
    response_time: SystemTime,
}

impl Proxy {
    pub fn new(
        config: ProxyConfig,
        local_addr: SocketAddr,
        server_stats: Arc<ServerStats>,
        shutdown: Shutdown,
    ) -> io::Result<Proxy> {
        let metrics = Arc::new(Metrics::default());
        let tunnels =
            TunnelHandle::start(config.tunnel_idle_timeout, Arc::clone(&metrics), shutdown)?;
        let via = format!("porter-{}-{}", std::process::id(), local_addr.port());
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            let opened = Cache::open(&CacheConfig {
                dir: dir.clone(),
                max_bytes: config.cache_size,
                max_object_size: config.max_object_size,
                memory_bytes: config.memory_cache_size,
            });
            // A read-only or broken disk must not take the proxy down: it relays instead.
            opened
                .map_err(|e| log::warn!("{e}; running without a cache"))
                .ok()
        });
        let origins = OriginPool::new(dest::DestRules {
            deny: config.deny_dests.clone(),
            listen: local_addr,
        });
        Ok(Proxy {
            config,
            local_addr,
            started: Instant::now(),
            metrics,
            server_stats,
            origins,
            tunnels,
            via,
            limits: Limits::default(),
            cache,
        })
    }

    /// Sends a page the proxy wrote itself and finishes the log entry. Returns the connection if it may
    /// stay open.
    fn reply(
        &self,
        mut conn: Conn,
        entry: &mut AccessEntry,
        (head, body): (http::ResponseHead, Vec<u8>),
        keep_alive: bool,
        head_only: bool,
    ) -> Option<Conn> {
        entry.status = head.status;
        let sent = pages::send(&mut conn.stream, head, &body, keep_alive, head_only);
        entry.bytes = *sent.as_ref().unwrap_or(&0);
        entry.finish(&self.metrics);
        (sent.is_ok() && keep_alive).then_some(conn)
    }

    /// The 403 page for a destination a `--deny-host` rule refuses, naming the rule.
    fn denied_host(&self, host: &str) -> Option<(http::ResponseHead, Vec<u8>)> {
        let rule = self.config.deny_hosts.iter().find(|p| p.matches(host))?;
        let message = format!(
            "access to {host} is denied by the rule --deny-host {}",
            rule.as_str()
        );
        Some(pages::error_page(403, &message))
    }

    /// Whether an absolute-form target names this proxy itself, which would forward to itself forever.
    fn is_self(&self, target: &Target) -> bool {
        if target.port != self.local_addr.port() {
            return false;
        }
        match crate::net::acl::ip_literal(&target.host).map(crate::net::acl::effective_ip) {
            Some(ip) if ip == crate::net::acl::effective_ip(self.local_addr.ip()) => true,
            Some(ip) => self.local_addr.ip().is_unspecified() && ip.is_loopback(),
            None => target.host == "localhost" && self.local_addr.ip().is_loopback(),
        }
    }

    fn handle_request(&self, conn: Conn, req: RequestHead) -> Option<Conn> {
        if !self.config.auth.is_empty() && !self.config.auth.admits(&req.headers) {
            let mut entry = AccessEntry::new(conn.peer, &req.method, &req.target);
            entry.outcome = Outcome::Denied;
            let (mut head, body) =
                pages::error_page(407, "this proxy needs a user name and password");
            head.headers.append(
                "Proxy-Authenticate",
                "Basic realm=\"porter\", charset=\"UTF-8\"",
            );
            // A request body we did not read would be taken for the next request: close.
            return self.reply(conn, &mut entry, (head, body), false, req.method == "HEAD");
        }
        if req.method == "CONNECT" {
            self.connect(conn, req);
            return None;
        }
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let has_body = match http::body::request_mode(&req.headers) {
            Ok(mode) => mode != http::body::BodyMode::NoBody,
            Err(e) => {
                let mut entry = AccessEntry::new(conn.peer, &req.method, &req.target);
                return self.reply(
                    conn,
                    &mut entry,
                    pages::error_page(e.client_status(), e.as_str()),
                    false,
                    false,
                );
            }
        };
        // Our own answers do not read a request body, so a connection with one cannot be reused.
        let reusable = keep_alive && !has_body;
        if req.target.starts_with('/') {
            let mut entry = AccessEntry::new(conn.peer, &req.method, &req.target);
            entry.outcome = Outcome::Local;
            return self.reply(
                conn,
                &mut entry,
                pages::own_page(self, &req),
                reusable,
                head_only,
            );
        }
        let mut entry = AccessEntry::new(conn.peer, &req.method, &req.target);
        let target = match Target::parse_absolute(&req.target) {
            Ok(target) => target,
            Err(e) => {
                let status = match e {
                    target::TargetError::Invalid => 400,
                    target::TargetError::UnsupportedScheme(_) => 501,
                };
                return self.reply(
                    conn,
                    &mut entry,
                    pages::error_page(status, &e.to_string()),
                    false,
                    false,
                );
            }
        };
        entry.url = target.url.clone();
        if self.is_self(&target) {
            entry.outcome = Outcome::Local;
            let mut local = req.clone();
            local.target = target.path_and_query.clone();
            return self.reply(
                conn,
                &mut entry,
                pages::own_page(self, &local),
                reusable,
                head_only,
            );
        }
        if req.headers.list("via").any(|hop| hop.ends_with(&self.via)) {
            let page = pages::error_page(
                508,
                "this request has already passed through this proxy: a forwarding loop",
            );
            return self.reply(conn, &mut entry, page, false, head_only);
        }
        let max_forwards = req.headers.get("max-forwards").map(str::trim);
        if (req.method == "TRACE" || req.method == "OPTIONS") && max_forwards == Some("0") {
            // Max-Forwards reached zero: this hop answers (RFC 9110 §7.6.2).
            entry.outcome = Outcome::Local;
            return self.reply(conn, &mut entry, pages::final_hop(&req), reusable, false);
        }
        if let Some(page) = self.denied_host(&target.host) {
            entry.outcome = Outcome::Denied;
            return self.reply(conn, &mut entry, page, reusable, head_only);
        }
        self.forward(conn, req, target, entry)
    }

    /// Forwards to the origin (through the cache for GET and HEAD); on a failure before the response
    /// head was sent, answers with an error page.
    fn forward(
        &self,
        mut conn: Conn,
        req: RequestHead,
        target: Target,
        mut entry: AccessEntry,
    ) -> Option<Conn> {
        entry.outcome = Outcome::Pass;
        // A GET or HEAD with a body is forwarded as is: a hit would leave the body unread on the
        // connection, to be taken for the next request.
        let bodiless = matches!(
            http::body::request_mode(&req.headers),
            Ok(http::body::BodyMode::NoBody)
        );
        let result = match &self.cache {
            Some(cache) if (req.method == "GET" || req.method == "HEAD") && bodiless => {
                self.through_cache(cache, &mut conn, &req, &target, &mut entry)
            }
            Some(cache) if req.method == "PURGE" => {
                let existed = cache.invalidate(&target.url);
                entry.outcome = Outcome::Local;
                let (status, message) = if existed {
                    (200, "purged")
                } else {
                    (404, "not in the cache")
                };
                let (mut head, _) = pages::error_page(status, message);
                head.headers
                    .set("Content-Type", "text/plain; charset=utf-8");
                return self.reply(
                    conn,
                    &mut entry,
                    (head, format!("{message}: {}\n", target.url).into_bytes()),
                    req.keep_alive() && bodiless,
                    false,
                );
            }
            _ => self.pass(&mut conn, &req, &target, &mut entry),
        };
        match result {
            Ok(keep_alive) => {
                entry.finish(&self.metrics);
                keep_alive.then_some(conn)
            }
            Err((error, head_sent)) => {
                entry.outcome = match error {
                    ProxyError::Denied(_) => Outcome::Denied,
                    _ => Outcome::Error,
                };
                if error.is_client_side() {
                    log::debug!("{}: {error}", conn.peer);
                    entry.finish(&self.metrics);
                    return None;
                }
                log::warn!("{} {}: {error}", req.method, target.url);
                if head_sent {
                    entry.finish(&self.metrics);
                    return None;
                }
                let page = pages::error_page(error.status(), &error.to_string());
                self.reply(conn, &mut entry, page, false, req.method == "HEAD")
            }
        }
    }

    /// Forwards without the cache; a successful unsafe method invalidates what the cache holds for the
    /// target and its Location / Content-Location (RFC 9111 §4.4).
    fn pass(
        &self,
        conn: &mut Conn,
        req: &RequestHead,
        target: &Target,
        entry: &mut AccessEntry,
    ) -> Result<bool, (ProxyError, bool)> {
        let fetched = self.fetch(conn, req, target, &[]).map_err(|e| (e, false))?;
        if let Some(cache) = &self.cache
            && cache::policy::invalidates(&req.method, fetched.head.status)
        {
            cache.invalidate(&target.url);
            for name in ["location", "content-location"] {
                if let Some(url) = fetched
                    .head
                    .headers
                    .get(name)
                    .and_then(|v| target.same_origin_url(v))
                {
                    cache.invalidate(&url);
                }
            }
        }
        self.relay(conn, fetched, req, target, entry, &[], None)
    }

    /// Sends the request upstream and reads the response head. `validators` replace the client's
    /// conditional fields when the cache revalidates.
    fn fetch(
        &self,
        conn: &mut Conn,
        req: &RequestHead,
        target: &Target,
        validators: &[(&'static str, String)],
    ) -> Result<Fetched, ProxyError> {
        let req_body = http::body::request_mode(&req.headers).map_err(ProxyError::BadRequest)?;
        let mut outbound = forward::outbound_request(req, target, &self.via, req_body);
        if !validators.is_empty() {
            for name in [
                "if-none-match",
                "if-modified-since",
                "if-match",
                "if-unmodified-since",
                "if-range",
                "range",
            ] {
                outbound.headers.remove(name);
            }
            for (name, value) in validators {
                outbound.headers.append(*name, value.as_bytes());
            }
        }
        let mut outbound_bytes = Vec::with_capacity(512);
        http::write::request_head(&mut outbound_bytes, &outbound);

        let timeout = self.config.origin_timeout;
        let request_time = SystemTime::now();
        let mut origin = self
            .origins
            .checkout(&target.host, target.port, timeout)
            .map_err(ProxyError::from_connect)?;
        let mut response = forward::exchange(
            conn,
            &mut origin,
            &outbound_bytes,
            req,
            req_body,
            &self.limits,
        );
        // A pooled connection the origin closed meanwhile fails before any response byte: retry once on
        // a new connection, when the request is idempotent (RFC 9110 §9.2.2) and had no body that is
        // already gone.
        let idempotent = matches!(
            req.method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        );
        if origin.reused
            && idempotent
            && req_body == http::body::BodyMode::NoBody
            && matches!(response, Err(ProxyError::OriginIo(_)))
        {
            origin = self
                .origins
                .connect(&target.host, target.port, timeout)
                .map_err(ProxyError::from_connect)?;
            response = forward::exchange(
                conn,
                &mut origin,
                &outbound_bytes,
                req,
                req_body,
                &self.limits,
            );
        }
        let head = response?;
        let mode = forward::response_mode(req, &head)?;
        Ok(Fetched {
            origin,
            head,
            mode,
            request_time,
            response_time: SystemTime::now(),
        })
    }

    /// Streams a fetched response to the client, teeing it into `store` and committing that only when
    /// the body arrived whole. Returns whether the client connection stays open.
    #[allow(clippy::too_many_arguments)]
    fn relay(
        &self,
        conn: &mut Conn,
        fetched: Fetched,
        req: &RequestHead,
        target: &Target,
        entry: &mut AccessEntry,
        extra_headers: &[(&str, String)],
        store: Option<CacheWriter>,
    ) -> Result<bool, (ProxyError, bool)> {
        let Fetched {
            mut origin,
            head: origin_head,
            mode,
            ..
        } = fetched;
        let (mut client_head, chunked) = forward::client_response_head(
            &origin_head,
            mode,
            req.version,
            req.keep_alive(),
            &self.via,
        );
        for (name, value) in extra_headers {
            client_head.headers.append(*name, value.as_bytes());
        }
        let client_keeps = !client_head.headers.has_token("connection", "close");
        entry.status = client_head.status;
        let relayed = forward::relay_body(conn, &mut origin, &client_head, mode, chunked, store)?;
        entry.bytes = relayed.bytes;
        if relayed.complete && origin_head.keep_alive() {
            self.origins.checkin(&target.host, target.port, origin);
        }
        Ok(client_keeps)
    }
}

impl Handler for Proxy {
    fn handle(&self, conn: Conn, request: Result<RequestHead, http::Error>) -> Option<Conn> {
        match request {
            Ok(req) => self.handle_request(conn, req),
            Err(error) => {
                let mut entry = AccessEntry::new(conn.peer, "-", "-");
                log::debug!("{}: {error}", conn.peer);
                self.reply(
                    conn,
                    &mut entry,
                    pages::error_page(error.client_status(), error.as_str()),
                    false,
                    false,
                )
            }
        }
    }

    fn refused(&self, peer: SocketAddr, status: u16, why: &str) {
        let mut entry = AccessEntry::new(peer, "-", "-");
        entry.status = status;
        entry.outcome = if status == 403 {
            Outcome::Denied
        } else {
            Outcome::Error
        };
        log::warn!("refused {peer}: {why}");
        entry.finish(&self.metrics);
    }
}
