//! The dial path: where a request or a tunnel leaves this proxy, straight to the origin or through a
//! parent proxy (`parent.rs` says which parents and which are up).
//!
//! ```text
//!  send_upstream ─┬─ Route::Direct ──> exchange_on(origin)       origin-form, Host
//!                 └─ Route::Parents ─> exchange_on(parent) …      absolute-form, Proxy-Authorization
//!                        each up parent in turn; refused or timed out (and no body sent yet) ─> next
//!                        none left ─> Fallback::Direct ─> exchange_on(origin) | Fallback::Fail ─> 502
//!  dial_tunnel ───┬─ Route::Direct ──> TCP to host:port
//!                 └─ Route::Parents ─> TCP to the parent, CONNECT host:port, its 2xx
//! ```

use std::io::{self, Write};
use std::time::Instant;

use super::parent::{Fallback, ParentAddr, Route};
use crate::http::Scheme;
use crate::http::authority::{self, DefaultPort};
use crate::http::body::BodyMode;
use crate::http::{self, ReadBuf, RequestHead, ResponseHead, parse};
use crate::net::Socket;
use crate::proxy::exchange::Exchange;
use crate::proxy::flow::forward;
use crate::proxy::ops::metrics::AccessEntry;
use crate::proxy::upstream::{self, UpstreamConn};
use crate::proxy::{Proxy, ProxyError};

/// Room for a parent's answer to CONNECT: a head, nothing more.
const CONNECT_ANSWER_BUF: usize = 16 * 1024;

/// A tunnel's upstream socket, and bytes the parent sent after its 200 (to go to the client first).
pub(in crate::proxy) struct TunnelDial {
    pub stream: Socket,
    pub early: Vec<u8>,
}

impl Proxy {
    /// Sends `outbound` (an origin-form request) to where its route says, and reads the response head.
    pub(in crate::proxy) fn send_upstream(
        &self,
        ex: &mut Exchange,
        outbound: &RequestHead,
    ) -> Result<(UpstreamConn, ResponseHead), ProxyError> {
        let mut origin_form = Vec::with_capacity(512);
        http::write::request_head(&mut origin_form, outbound);
        if self.parents.route(&ex.target.host) == Route::Parents {
            let bytes = match ex.target.scheme {
                // An intercepted https request goes inside a tunnel through the parent, as it would
                // to the origin: origin-form, and no credentials of ours inside the origin's TLS.
                Scheme::Https => origin_form.clone(),
                Scheme::Http => self.parent_form(ex, outbound),
            };
            let mut tried = Vec::new();
            for index in self.parents.up_parents(Instant::now()) {
                let parent = self.parents.addr(index);
                match self.exchange_on(ex, Some(parent), &bytes) {
                    Ok((_, head)) if head.status == 407 && ex.target.scheme == Scheme::Http => {
                        // Our --parent-auth is wrong: nothing the client could fix with its own.
                        ex.entry.parent = Some(parent.to_string());
                        return Err(ProxyError::ParentRefused {
                            parent: parent.to_string(),
                            status: 407,
                        });
                    }
                    Ok(answer) => {
                        self.parents.mark_used(index);
                        ex.entry.parent = Some(parent.to_string());
                        return Ok(answer);
                    }
                    Err(error) if parent_fault(&error) => {
                        self.parents.mark_down(index, &error);
                        if !resendable(&error, ex.req_body) {
                            ex.entry.parent = Some(parent.to_string());
                            return Err(error);
                        }
                        tried.push(format!("{parent} ({})", failure_text(&error)));
                    }
                    Err(error) => {
                        ex.entry.parent = Some(parent.to_string());
                        return Err(error);
                    }
                }
            }
            self.no_parent_left(tried)?;
        }
        self.exchange_on(ex, None, &origin_form)
    }

    /// The request as a parent proxy takes it: absolute-form (RFC 9112 §3.2.2), with our
    /// credentials for the parent; the client's own were stripped as hop-by-hop.
    fn parent_form(&self, ex: &Exchange, outbound: &RequestHead) -> Vec<u8> {
        let mut via_parent = outbound.clone();
        via_parent.target = ex.target.url.clone();
        if let Some(auth) = &self.parents.config.auth {
            via_parent.headers.set("Proxy-Authorization", auth.as_str());
        }
        let mut bytes = Vec::with_capacity(512);
        http::write::request_head(&mut bytes, &via_parent);
        bytes
    }

    /// With every parent failed or down: `Ok` to go direct, or the 502 naming them.
    fn no_parent_left(&self, tried: Vec<String>) -> Result<(), ProxyError> {
        if self.parents.config.fallback == Fallback::Direct {
            return Ok(());
        }
        let what = if tried.is_empty() {
            format!(
                "every parent is marked down after a recent failure ({})",
                self.parents.names()
            )
        } else {
            tried.join("; ")
        };
        Err(ProxyError::NoParent(what))
    }

    /// A pooled or new upstream connection for the exchange's target: to the origin, or through
    /// `parent` (plain HTTP to the parent itself; https inside a tunnel the parent opens).
    fn upstream_conn(
        &self,
        ex: &Exchange,
        parent: Option<&ParentAddr>,
        fresh: bool,
    ) -> Result<UpstreamConn, ProxyError> {
        let timeout = self.config.load().origin_timeout;
        let tls = self.interceptor.as_ref().map(|i| &i.upstream);
        let target = &ex.target;
        let (host, port) = (target.host.as_str(), target.port);
        match (parent, target.scheme) {
            (None, scheme) if fresh => Ok(upstream::dial(
                self.origins.rules(),
                scheme,
                host,
                port,
                timeout,
                tls,
            )?),
            (None, scheme) => Ok(self.origins.checkout(scheme, host, port, timeout, tls)?),
            (Some(parent), Scheme::Http) => {
                let (phost, pport) = (parent.host.as_str(), parent.port);
                let mut conn = match self.origins.take_idle(Scheme::Http, phost, pport) {
                    Some(conn) if !fresh => conn,
                    _ => upstream::dial(
                        &self.origins.rules().for_parent(),
                        Scheme::Http,
                        phost,
                        pport,
                        timeout,
                        None,
                    )?,
                };
                conn.parent = Some((Scheme::Http, phost.to_string(), pport));
                Ok(conn)
            }
            (Some(parent), Scheme::Https) => {
                if !fresh && let Some(conn) = self.origins.take_idle(Scheme::Https, host, port) {
                    return Ok(conn);
                }
                let tunnel = self.connect_via(&parent.host, parent.port, host, port, &ex.req)?;
                if !tunnel.early.is_empty() {
                    return Err(ProxyError::BadResponse(http::Error::Malformed(
                        "the parent sent bytes before the TLS handshake",
                    )));
                }
                Ok(upstream::tls_over(host, tunnel.stream, timeout, tls)?)
            }
        }
    }

    /// One request on a pooled or new connection, to the origin or through `parent`.
    fn exchange_on(
        &self,
        ex: &mut Exchange,
        parent: Option<&ParentAddr>,
        bytes: &[u8],
    ) -> Result<(UpstreamConn, ResponseHead), ProxyError> {
        let mut conn = self.upstream_conn(ex, parent, false)?;
        let (req, req_body) = (&ex.req, ex.req_body);
        let mut response =
            forward::exchange(&mut ex.conn, &mut conn, bytes, req, req_body, &self.limits);
        // A pooled connection the far end closed meanwhile fails before any response byte: retry
        // once on a new connection, when the request is idempotent (RFC 9110 §9.2.2) and had no body
        // that is already gone.
        if conn.reused
            && req.method.is_idempotent()
            && req_body == BodyMode::NoBody
            && matches!(response, Err(ProxyError::OriginIo(_)))
        {
            conn = self.upstream_conn(ex, parent, true)?;
            let req = &ex.req;
            response =
                forward::exchange(&mut ex.conn, &mut conn, bytes, req, req_body, &self.limits);
        }
        Ok((conn, response?))
    }

    /// The upstream socket of a CONNECT tunnel to `host:port`, through a parent when the route says.
    pub(in crate::proxy) fn dial_tunnel(
        &self,
        host: &str,
        port: u16,
        req: &RequestHead,
        entry: &mut AccessEntry,
    ) -> Result<TunnelDial, ProxyError> {
        let timeout = self.config.load().origin_timeout;
        if self.parents.route(host) == Route::Parents {
            let mut tried = Vec::new();
            for index in self.parents.up_parents(Instant::now()) {
                let parent = self.parents.addr(index);
                match self.connect_via(&parent.host, parent.port, host, port, req) {
                    Ok(dial) => {
                        self.parents.mark_used(index);
                        entry.parent = Some(parent.to_string());
                        return Ok(dial);
                    }
                    Err(error @ (ProxyError::Dial(_) | ProxyError::OriginTimeout)) => {
                        self.parents.mark_down(index, &error);
                        tried.push(format!("{parent} ({})", failure_text(&error)));
                    }
                    Err(error) => {
                        entry.parent = Some(parent.to_string());
                        return Err(error);
                    }
                }
            }
            self.no_parent_left(tried)?;
        }
        let stream = upstream::dial_tcp(self.origins.rules(), host, port, timeout)
            .map_err(ProxyError::from_dial)?;
        Ok(TunnelDial {
            stream,
            early: Vec::new(),
        })
    }

    /// Opens a tunnel through the parent at `parent_host:parent_port` with its own CONNECT.
    fn connect_via(
        &self,
        parent_host: &str,
        parent_port: u16,
        host: &str,
        port: u16,
        req: &RequestHead,
    ) -> Result<TunnelDial, ProxyError> {
        let timeout = self.config.load().origin_timeout;
        let rules = self.origins.rules().for_parent();
        let mut stream = upstream::dial_tcp(&rules, parent_host, parent_port, timeout)
            .map_err(ProxyError::from_dial)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(ProxyError::Dial)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(ProxyError::Dial)?;
        let target = authority::format(host, port, DefaultPort::Keep);
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
        if let Some(auth) = &self.parents.config.auth {
            head.extend_from_slice(format!("Proxy-Authorization: {auth}\r\n").as_bytes());
        }
        // Via goes up with the CONNECT too, so a loop of tunnels is caught like a loop of requests.
        let mut via = req.headers.clone_value("via");
        forward::append_via_value(&mut via, req.version, &self.via);
        head.extend_from_slice(b"Via: ");
        head.extend_from_slice(&via);
        head.extend_from_slice(b"\r\n\r\n");
        stream.write_all(&head).map_err(ProxyError::Dial)?;
        let mut buf = ReadBuf::with_capacity(CONNECT_ANSWER_BUF);
        let answer = read_connect_answer(&mut buf, &mut stream, &self.limits)?;
        if !(200..300).contains(&answer.status) {
            return Err(ProxyError::ParentRefused {
                parent: authority::format(parent_host, parent_port, DefaultPort::Keep),
                status: answer.status,
            });
        }
        stream.set_read_timeout(None).map_err(ProxyError::Dial)?;
        stream.set_write_timeout(None).map_err(ProxyError::Dial)?;
        Ok(TunnelDial {
            early: buf.data().to_vec(),
            stream,
        })
    }
}

/// The parent's answer to CONNECT: a head with no body to read (RFC 9110 §9.3.6 for 2xx; an error
/// answer is not read further, the connection is dropped).
fn read_connect_answer(
    buf: &mut ReadBuf,
    stream: &mut Socket,
    limits: &http::Limits,
) -> Result<ResponseHead, ProxyError> {
    loop {
        if !buf.is_empty() {
            match parse::response(buf.data(), limits) {
                Ok(Some((head, len))) => {
                    buf.consume(len);
                    return Ok(head);
                }
                Ok(None) if buf.is_full() => {
                    return Err(ProxyError::BadResponse(http::Error::HeadTooLarge));
                }
                Ok(None) => {}
                Err(e) => return Err(ProxyError::BadResponse(e)),
            }
        }
        match buf.fill_from(stream) {
            Ok(0) => {
                return Err(ProxyError::Dial(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the parent closed the connection without answering CONNECT",
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if crate::proxy::error::is_timeout(&e) => return Err(ProxyError::OriginTimeout),
            Err(e) => return Err(ProxyError::Dial(e)),
        }
    }
}

/// Whether an error says the parent itself is unusable: it refused, timed out or dropped the
/// connection. Such a parent is marked down.
fn parent_fault(error: &ProxyError) -> bool {
    matches!(
        error,
        ProxyError::Dial(_) | ProxyError::OriginTimeout | ProxyError::OriginIo(_)
    )
}

/// Whether the request may go to the next parent after this fault: always when the connection was
/// never made; after the request was written only without a body, since a body once sent is gone.
fn resendable(error: &ProxyError, req_body: BodyMode) -> bool {
    matches!(error, ProxyError::Dial(_)) || req_body == BodyMode::NoBody
}

/// What went wrong with a parent, in words that do not call it the origin.
fn failure_text(error: &ProxyError) -> String {
    match error {
        ProxyError::Dial(e) if crate::proxy::error::is_timeout(e) => {
            "timed out connecting".to_string()
        }
        ProxyError::Dial(e) => format!("cannot connect: {e}"),
        ProxyError::OriginTimeout => "did not answer in time".to_string(),
        ProxyError::OriginIo(e) => format!("connection failed: {e}"),
        other => other.to_string(),
    }
}
