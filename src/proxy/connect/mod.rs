//! CONNECT host:port (RFC 9110 §9.3.6): check the port and host rules, connect, answer 200 and hand
//! both sockets to the tunnel relay, so the worker is free again at once. The relay is `tunnel`;
//! `intercept` decrypts the tunnels `--intercept` names, with its pages in `intercept_pages`.

mod intercept;
pub(super) mod intercept_pages;
pub(super) mod tunnel;

use std::io::Write;

use super::Proxy;
use super::exchange::{Answer, Reuse};
use super::ops::metrics::{AccessEntry, Outcome};
use super::ops::{self, pages};
use crate::http::{RequestHead, authority};
use crate::net::{Authority, Conn};
use std::sync::atomic::Ordering;
use tunnel::NewTunnel;

impl Proxy {
    /// CONNECT host:port: check the rules, connect, answer 200 and hand both sockets to the relay.
    pub(super) fn connect(
        &self,
        mut conn: Conn,
        req: RequestHead,
        mut entry: AccessEntry,
    ) -> Option<Conn> {
        let closing = Answer::to(&req, Reuse::Close);
        let Ok((host, port)) = authority::parse(&req.target) else {
            let page = pages::status_page(400, "CONNECT needs a host:port target");
            self.reply(conn, &mut entry, page, closing);
            return None;
        };
        if ops::setup::is_check_host(&host) {
            return self.check_connect(conn, entry, Authority { host, port }, closing);
        }
        if !self.config.load().connect_ports.contains(&port) {
            entry.outcome = Outcome::Denied;
            let allowed: Vec<String> = self
                .config
                .load()
                .connect_ports
                .iter()
                .map(u16::to_string)
                .collect();
            // Name the flag that opens a port: the operator reading the page is the one to run it.
            let message = format!(
                "CONNECT to port {port} is not allowed (allowed ports: {}; add one with \
                 --connect-port {port})",
                allowed.join(", ")
            );
            self.reply(conn, &mut entry, pages::status_page(403, &message), closing);
            return None;
        }
        if let Some(page) = self.denied_host(&host) {
            entry.outcome = Outcome::Denied;
            self.reply(conn, &mut entry, page, closing);
            return None;
        }
        if req.headers.list("via").any(|hop| hop.ends_with(&self.via)) {
            let message = "this CONNECT has already passed through this proxy: a forwarding loop";
            self.reply(conn, &mut entry, pages::status_page(508, message), closing);
            return None;
        }
        if self.intercepts(&host) {
            // Interception answers 200 before it dials: check the destination rules first, so a
            // refused address is a 403 here, not a failure inside the tunnel.
            if let Some(denied) = self.origins.refused(&host, port) {
                entry.outcome = Outcome::Denied;
                let page = pages::status_page(403, &denied.to_string());
                self.reply(conn, &mut entry, page, closing);
                return None;
            }
            // The requests inside are judged (PURGE) and logged as this CONNECT's user.
            conn.user = entry.user.take();
            return self.intercept_connect(conn, Authority { host, port });
        }
        let dial = match self.dial_tunnel(&host, port, &req, &mut entry) {
            Ok(dial) => dial,
            Err(error) => {
                if let super::ProxyError::Denied(_) = error {
                    entry.outcome = Outcome::Denied;
                }
                log::warn!("CONNECT {}: {error}", req.target);
                let page = pages::status_page(error.status(), &error.to_string());
                self.reply(conn, &mut entry, page, closing);
                return None;
            }
        };
        if conn
            .stream
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .is_err()
        {
            return None;
        }
        let (client, buf, slot) = conn.into_parts();
        let mut client = client.into_socket()?;
        if !dial.early.is_empty() && client.write_all(&dial.early).is_err() {
            return None;
        }
        // Bytes the client sent right after its CONNECT head (a TLS ClientHello) go first.
        let mut origin = dial.stream;
        if !buf.is_empty() && origin.write_all(buf.data()).is_err() {
            return None;
        }
        entry.status = 200;
        entry.outcome = Outcome::Tunnel;
        if let Some(stats) = self.interceptor.as_ref().map(|i| &i.stats) {
            stats.connects_tunnelled.fetch_add(1, Ordering::Relaxed);
        }
        self.tunnels.relay(NewTunnel {
            client: client.into_std(),
            origin: origin.into_std(),
            slot,
            entry,
        });
        None
    }

    /// CONNECT to the setup page's check name: nothing is dialled, whatever the port and host rules
    /// say (they guard origins, and this name has none); the proxy terminates the TLS itself with a
    /// leaf from its CA and answers the check inside (`ops::setup`). Without interception there is
    /// no CA to check, so the answer is a 404 rather than a lookup that must fail.
    fn check_connect(
        &self,
        mut conn: Conn,
        mut entry: AccessEntry,
        authority: Authority,
        closing: Answer,
    ) -> Option<Conn> {
        if self.interceptor.is_none() {
            let page = pages::status_page(
                404,
                "this proxy does not intercept HTTPS (start it with --intercept), so it has no \
                 CA for /setup to check",
            );
            self.reply(conn, &mut entry, page, closing);
            return None;
        }
        conn.user = entry.user.take();
        self.intercept_connect(conn, authority)
    }
}
