//! HTTPS interception (`--intercept`): a CONNECT to an intercepted host is answered 200 without
//! dialling anything, the client's first bytes decide what the tunnel carries, and requests inside a
//! terminated TLS session join the ordinary request path as `https://HOST:PORT/path` targets.
//!
//! ```text
//!  CONNECT host:port ─ rules ─ intercepted? ─no──> tunnel (connect.rs)
//!                                 │yes
//!                   200, wait for the first bytes (net::Layer::AwaitingFirstBytes)
//!                                 │
//!        ┌─ not TLS, or TLS ──────┼─ TLS ClientHello ───────────────┬─ broken ─> alert, close
//!        │  without http/1.1      │                                  │
//!        ▼                        ▼                                  │
//!   route as a CONNECT:       leaf for SNI (or host), TlsStream      │
//!   parent or origin          (net::Layer::Inside): each request ─> Host must name host:port
//!   (dial_tunnel), relay
//!                                                                   ─> dispatch as https://host:port/path
//! ```
//! The target of every request inside is the CONNECT authority: an inner Host naming another host
//! would poison that host's cache entries or reach a host the rules refused, so it is a 400.
//!
//! One name is special: `setup.porter.invalid`, the `/setup` page's check (`ops::setup`). Its
//! CONNECT is intercepted whatever the rules say, is never tunnelled (not for a plain or h2-only
//! client, not by `--intercept-fallback`: there is no origin behind it), and the request inside is
//! answered by the proxy.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::tunnel::NewTunnel;
use crate::http::authority::{self, DefaultPort};
use crate::http::{self, Method, RequestHead};
use crate::net::{Authority, Conn, FirstBytes, Layer};
use crate::proxy::exchange::{Answer, Reuse};
use crate::proxy::flow::target::Target;
use crate::proxy::ops::metrics::{AccessEntry, Outcome};
use crate::proxy::ops::pages;
use crate::proxy::{Proxy, ProxyError};
use crate::tls::hello::{self, FirstBytes as Hello};
use crate::tls::{Failure, Side, TlsStream};

impl Proxy {
    /// Whether a CONNECT to `host` is intercepted.
    pub(in crate::proxy) fn intercepts(&self, host: &str) -> bool {
        self.interceptor.is_some()
            && self
                .config
                .load()
                .intercept
                .as_ref()
                .is_some_and(|rules| rules.covers(host))
    }

    /// Answers 200 and waits for the client's first bytes (the worker is free meanwhile). The CONNECT's log line is written
    /// once those bytes decide what the tunnel is.
    pub(in crate::proxy) fn intercept_connect(
        &self,
        mut conn: Conn,
        authority: Authority,
    ) -> Option<Conn> {
        conn.stream
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .ok()?;
        conn.await_first_bytes(authority, self.config.load().server.head_timeout);
        Some(conn)
    }

    /// Decides what an intercepted tunnel carries, from its first bytes.
    pub(in crate::proxy) fn tunnel_first_bytes(&self, mut conn: Conn) -> FirstBytes {
        let (Some(interceptor), Layer::AwaitingFirstBytes(authority)) =
            (&self.interceptor, conn.layer.clone())
        else {
            return FirstBytes::Done(None);
        };
        let stats = &interceptor.stats;
        let connect_line = authority::format(&authority.host, authority.port, DefaultPort::Keep);
        let fallback_for = self
            .config
            .load()
            .intercept
            .as_ref()
            .and_then(|i| i.fallback_for);
        // The setup check is never tunnelled: there is no origin behind its name, and it exists to
        // show whether the client trusts the CA.
        let local = crate::proxy::ops::setup::is_check_host(&authority.host);
        if let Some(within) = fallback_for
            && !local
            && stats
                .distrust
                .refused_within(conn.peer.ip(), &authority.host, within)
        {
            // Squid's on_ssl_bump_error splice: a client that refused the certificate (a pinned
            // one, or one not set up yet) gets the origin's own, untouched.
            log::info!(
                "{}: CONNECT {connect_line} tunnelled, not intercepted: the client refused \
                 Porter's certificate for {} (--intercept-fallback tunnel)",
                conn.peer,
                authority.host
            );
            stats.distrust.fallback_tunnelled();
            self.plain_tunnel(conn, &authority, connect_line);
            return FirstBytes::Done(None);
        }
        let accepted = match hello::classify(conn.buf.data(), conn.buf.capacity()) {
            Hello::NeedMore => return FirstBytes::NeedMore(conn),
            Hello::TooLarge(too_large) => {
                stats.failed(Side::Client, Failure::HelloTooLarge);
                log::warn!("{}: CONNECT {connect_line}: {too_large}", conn.peer);
                let _ = conn.stream.write_all(too_large.alert());
                return FirstBytes::Done(None);
            }
            Hello::TooFragmented(too_many) => {
                stats.failed(Side::Client, Failure::HelloTooFragmented);
                log::warn!("{}: CONNECT {connect_line}: {too_many}", conn.peer);
                let _ = conn.stream.write_all(too_many.alert());
                return FirstBytes::Done(None);
            }
            Hello::NotTls if local => {
                log::debug!("{}: CONNECT {connect_line}: not TLS", conn.peer);
                return FirstBytes::Done(None);
            }
            Hello::NotTls => {
                self.plain_tunnel(conn, &authority, connect_line);
                return FirstBytes::Done(None);
            }
            Hello::Refused { failure, alert } => {
                stats.failed(Side::Client, failure);
                log::debug!(
                    "{}: no TLS for CONNECT {connect_line}: {}",
                    conn.peer,
                    failure.as_str()
                );
                let _ = conn.stream.write_all(&alert);
                return FirstBytes::Done(None);
            }
            Hello::Hello(accepted) => accepted,
        };
        // A client offering protocols but not HTTP/1.1 (only h2, or not HTTP at all) would fail
        // against our http/1.1-only ALPN: relay it untouched instead, hello included.
        let speaks_http1 = accepted
            .client_hello()
            .alpn()
            .is_none_or(|mut offered| offered.any(|p| p == b"http/1.1"));
        if !speaks_http1 && local {
            log::debug!("{}: CONNECT {connect_line}: no http/1.1 in ALPN", conn.peer);
            return FirstBytes::Done(None);
        }
        if !speaks_http1 {
            self.plain_tunnel(conn, &authority, connect_line);
            return FirstBytes::Done(None);
        }
        let name = accepted
            .client_hello()
            .server_name()
            .map_or_else(|| authority.host.clone(), str::to_ascii_lowercase);
        let config = match interceptor.minter.config_for(&name) {
            Ok(config) => config,
            Err(e) => {
                log::warn!("CONNECT {connect_line}: {e}");
                return FirstBytes::Done(None);
            }
        };
        let server = match accepted.into_connection(config) {
            Ok(server) => server,
            Err((error, mut alert)) => {
                stats.failed(Side::Client, Failure::of(&error));
                log::debug!("{}: TLS for {connect_line} refused: {error}", conn.peer);
                let _ = alert.write_all(&mut conn.stream);
                return FirstBytes::Done(None);
            }
        };
        stats.connects_intercepted.fetch_add(1, Ordering::Relaxed);
        let mut entry = AccessEntry::new(conn.peer, "CONNECT", &connect_line);
        entry.status = 200;
        entry.outcome = Outcome::Intercept;
        entry.finish(&self.metrics);
        let stats = Arc::clone(stats);
        let (client, host) = (conn.peer.ip(), authority.host.clone());
        FirstBytes::Done(conn.into_tls(
            |tcp| TlsStream::server(server, tcp, stats).for_client(client, host),
            authority,
        ))
    }

    /// Not TLS after all (or not HTTP/1.1 inside): relay the bytes both ways, untouched, over the
    /// upstream an ordinary CONNECT would get (`dial_tunnel`): through the parents, honouring
    /// `--direct-host`, `--parent-fallback` and `--deny-dest` on every address dialled. Dialling the
    /// origin here by itself once sent h2-only and plain traffic around the parents.
    fn plain_tunnel(&self, conn: Conn, authority: &Authority, connect_line: String) {
        let mut entry = AccessEntry::new(conn.peer, "CONNECT", &connect_line);
        // The CONNECT this tunnel answers, as the parent is to see it: its own head went through
        // the loop check already, and only our Via goes up.
        let mut connect_head = RequestHead {
            method: Method::Connect,
            target: connect_line.clone(),
            version: http::Version::Http11,
            headers: http::Headers::new(),
        };
        connect_head.headers.set("Host", connect_line.as_str());
        let dialled = self.dial_tunnel(&authority.host, authority.port, &connect_head, &mut entry);
        let dial = match dialled {
            Ok(dial) => dial,
            Err(error) => {
                // The 200 is gone already: closing is all that is left to say.
                log::warn!("CONNECT {connect_line}: {error}");
                entry.status = error.status();
                if let ProxyError::Denied(_) = error {
                    entry.outcome = Outcome::Denied;
                }
                entry.finish(&self.metrics);
                return;
            }
        };
        let (client, buf, slot) = conn.into_parts();
        let Some(mut client) = client.into_socket() else {
            return;
        };
        // What the parent sent after its 200 goes to the client; the client's first bytes (the
        // ClientHello or the plain request that decided this) go up first.
        if !dial.early.is_empty() && client.write_all(&dial.early).is_err() {
            return;
        }
        let mut origin = dial.stream;
        if origin.write_all(buf.data()).is_err() {
            return;
        }
        if let Some(interceptor) = &self.interceptor {
            interceptor
                .stats
                .connects_tunnelled
                .fetch_add(1, Ordering::Relaxed);
        }
        entry.status = 200;
        entry.outcome = Outcome::Tunnel;
        self.tunnels.relay(NewTunnel {
            client: client.into_std(),
            origin: origin.into_std(),
            slot,
            entry,
        });
    }

    /// A request inside an intercepted tunnel: check that it is for the tunnel's host, then handle it
    /// as the absolute-form `https://` request it stands for.
    pub(in crate::proxy) fn inside_request(&self, conn: Conn, req: RequestHead) -> Option<Conn> {
        let authority = conn.inside()?.clone();
        let mut entry = AccessEntry::new(conn.peer, req.method.as_str(), &req.target);
        entry.user = conn.user.clone();
        // Refusals close: a request body we did not read would be taken for the next request.
        let closing = Answer::to(&req, Reuse::Close);
        let refuse = |conn, entry: &mut AccessEntry, message: &str| {
            self.reply(conn, entry, pages::status_page(400, message), closing)
        };
        if req.method == Method::Connect {
            return refuse(conn, &mut entry, "CONNECT inside an intercepted tunnel");
        }
        let req_body = match http::body::request_mode(&req.headers) {
            Ok(mode) => mode,
            Err(e) => {
                let page = pages::status_page(e.client_status(), e.as_str());
                return self.reply(conn, &mut entry, page, closing);
            }
        };
        let path = match inner_path(&req.target, &authority) {
            Ok(path) => path,
            Err(message) => return refuse(conn, &mut entry, &message),
        };
        let hosts: Vec<&str> = req.headers.get_all("host").collect();
        match hosts.as_slice() {
            [one] if names(one, &authority) => {}
            [] if req.version == http::Version::Http10 => {}
            [one] => {
                let message = format!(
                    "the Host field names {one}, but this tunnel was opened to {}: \
                     requests inside it may only go there",
                    authority::format(&authority.host, authority.port, DefaultPort::Omit(443))
                );
                log::warn!("{}: {message}", conn.peer);
                return refuse(conn, &mut entry, &message);
            }
            [] => return refuse(conn, &mut entry, "a request needs a Host field"),
            _ => return refuse(conn, &mut entry, "more than one Host field"),
        }
        match Target::https(&authority.host, authority.port, &path) {
            Ok(target) => self.dispatch(conn, req, target, req_body, entry),
            Err(e) => refuse(conn, &mut entry, &e.to_string()),
        }
    }
}

/// The origin-form path of a request inside a tunnel: its target as sent, or the path of an absolute
/// `https://` target naming the tunnel's own authority.
fn inner_path(request_target: &str, authority: &Authority) -> Result<String, String> {
    if request_target.starts_with('/') {
        return Ok(request_target.to_string());
    }
    let named = url::Url::parse(request_target)
        .ok()
        .filter(|url| url.scheme() == "https")
        .and_then(|url| {
            let (host, port) = authority::of_url(&url)?;
            let mut path = url.path().to_string();
            if let Some(query) = url.query() {
                path.push('?');
                path.push_str(query);
            }
            Some((host, port, path))
        });
    match named {
        Some((host, port, path)) if host == authority.host && port == authority.port => Ok(path),
        Some((host, port, _)) => Err(format!(
            "the request names {}, but this tunnel was opened to {}",
            authority::format(&host, port, DefaultPort::Omit(443)),
            authority::format(&authority.host, authority.port, DefaultPort::Omit(443))
        )),
        None => Err(format!(
            "{request_target:?} is not a path on this tunnel's host"
        )),
    }
}

/// Whether a Host field value names `authority` (the port defaults to 443 inside TLS).
fn names(value: &str, authority: &Authority) -> bool {
    let value = value.trim();
    let parsed = match authority::parse(value) {
        Err(authority::AuthorityError::MissingPort) => authority::parse(&format!("{value}:443")),
        // `[::1]` alone: its last colon is inside the brackets.
        Err(_) if value.ends_with(']') => authority::parse(&format!("{value}:443")),
        other => other,
    };
    parsed.is_ok_and(|(host, port)| host == authority.host && port == authority.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str, port: u16) -> Authority {
        Authority {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_host_field_must_name_the_tunnels_authority() {
        assert!(names("localhost:8443", &at("localhost", 8443)));
        assert!(names("LOCALHOST:8443", &at("localhost", 8443)));
        assert!(names("example.com", &at("example.com", 443)));
        assert!(names("example.com:443", &at("example.com", 443)));
        assert!(names("[::1]:8443", &at("::1", 8443)));
        assert!(!names("example.com", &at("example.com", 8443)));
        assert!(!names("other.test:8443", &at("localhost", 8443)));
        assert!(!names("localhost:x", &at("localhost", 8443)));
        assert!(!names("[::1]x", &at("::1", 443)));
    }

    #[test]
    fn an_absolute_target_inside_must_be_the_same_authority() {
        let tunnel = at("localhost", 8443);
        assert_eq!(inner_path("/a?b", &tunnel).unwrap(), "/a?b");
        assert_eq!(
            inner_path("https://localhost:8443/x", &tunnel).unwrap(),
            "/x"
        );
        assert!(inner_path("https://evil.test/x", &tunnel).is_err());
        assert!(inner_path("http://localhost:8443/x", &tunnel).is_err());
        assert!(inner_path("*", &tunnel).is_err());
    }
}
