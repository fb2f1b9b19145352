//! The upstream side of the proxy: dialling origin servers with a timeout (each resolved address
//! checked against the destination rules first, see `dest`; and, for `https://`
//! targets of intercepted requests, a verified TLS handshake), and a small pool of idle keep-alive
//! connections per scheme and host so repeated requests skip the TCP and TLS handshakes.
//! (`crate::tools::serve` is the file server; this module only talks to whatever origin a request names.)
//! Beside the pool: `dest` and `allow` (which addresses and names may be reached), `parent` (parent
//! proxies and their health) and `route` (the dial to an origin or through a parent).

pub mod allow;
pub mod dest;
pub mod parent;
mod route;

use crate::runtime::Mutex;
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use crate::http::ReadBuf;
use crate::http::Scheme;
use crate::net::{Socket, Stream};
use crate::tls::{UpstreamTls, UpstreamTlsError};
use dest::{DestDenied, DestRules};

/// Idle connections kept per origin, and in all.
const MAX_IDLE_PER_ORIGIN: usize = 32;
const MAX_IDLE_TOTAL: usize = 512;
/// Origins often close idle connections after 5 to 60 s; reusing one older than this risks a race.
const MAX_IDLE_AGE: Duration = Duration::from_secs(4);
/// Response head buffer per origin connection: the head limit plus room for the start of the body.
const ORIGIN_BUF: usize = 80 * 1024;

/// A connection to an origin with its read buffer.
pub struct UpstreamConn {
    pub stream: Stream,
    pub buf: ReadBuf,
    /// Whether it came from the pool: a failure before any response byte may then be retried.
    pub reused: bool,
    /// The parent proxy a plain-HTTP connection goes to, when it does: the pool files it under the
    /// parent, not under the origin of the request it carried.
    pub parent: Option<UpstreamKey>,
}

pub type UpstreamKey = (Scheme, String, u16);

/// Why no connection to an origin could be made.
#[derive(Debug)]
pub enum DialError {
    /// Resolving or connecting failed.
    Tcp(io::Error),
    /// The TLS handshake failed, or the origin's certificate does not verify.
    Tls(UpstreamTlsError),
    /// An https origin, but interception (which brings the TLS settings) is off.
    NoTls,
}

/// Idle origin connections, most recently used last, and the rules every new connection obeys.
pub struct UpstreamPool {
    idle: Mutex<HashMap<UpstreamKey, Vec<(UpstreamConn, Instant)>>>,
    rules: DestRules,
}

impl UpstreamPool {
    pub fn new(rules: DestRules) -> UpstreamPool {
        UpstreamPool {
            idle: Mutex::default(),
            rules,
        }
    }

    /// The destination rules, for the dials that do not go through the pool.
    pub fn rules(&self) -> &DestRules {
        &self.rules
    }

    /// The refusal when the destination rules refuse every address `host:port` resolves to (for a
    /// CONNECT answered before any dial, as interception does); `None` when one is allowed or the
    /// name does not resolve (the dial reports that).
    pub fn refused(&self, host: &str, port: u16) -> Option<DestDenied> {
        let mut refusal = None;
        let timeout = Duration::from_secs(30);
        for addr in crate::net::resolve::resolve(host, port, timeout).ok()? {
            match self.rules.check_for(host, addr) {
                Ok(()) => return None,
                Err(denied) => refusal = refusal.or(Some(denied)),
            }
        }
        refusal
    }

    /// A pooled connection to `scheme://host:port`, or a new one.
    pub fn checkout(
        &self,
        scheme: Scheme,
        host: &str,
        port: u16,
        timeout: Duration,
        tls: Option<&UpstreamTls>,
    ) -> Result<UpstreamConn, DialError> {
        if let Some(conn) = self.take_idle(scheme, host, port) {
            return Ok(conn);
        }
        dial(&self.rules, scheme, host, port, timeout, tls)
    }

    /// A pooled connection to `scheme://host:port`, if one is idle and quiet.
    pub fn take_idle(&self, scheme: Scheme, host: &str, port: u16) -> Option<UpstreamConn> {
        let key = (scheme, host.to_string(), port);
        // Each candidate is checked with a system call, outside the lock every worker takes.
        while let Some((mut conn, since)) = self.pop_idle(&key) {
            if since.elapsed() < MAX_IDLE_AGE && is_quiet(&mut conn.stream) {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// The idle connection to `key` to try next: the most recent one already on this worker's
    /// poller, if any (taking it over costs no system call, while one from another worker moves
    /// between pollers), else the most recent.
    fn pop_idle(&self, key: &UpstreamKey) -> Option<(UpstreamConn, Instant)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        if let Some(at) = list
            .iter()
            .rposition(|(conn, _)| conn.stream.socket().is_on_this_worker())
        {
            let last = list.len() - 1;
            list.swap(at, last);
        }
        let next = list.pop();
        if list.is_empty() {
            idle.remove(key);
        }
        next
    }

    /// Returns a connection whose last response was read completely, for reuse.
    pub fn checkin(&self, scheme: Scheme, host: &str, port: u16, mut conn: UpstreamConn) {
        if !conn.buf.is_empty() || conn.stream.has_buffered_input() {
            return; // the origin sent bytes beyond the response: not trustworthy
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= MAX_IDLE_TOTAL {
            return;
        }
        let key = conn
            .parent
            .clone()
            .unwrap_or_else(|| (scheme, host.to_string(), port));
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push((conn, Instant::now()));
        }
    }
}

/// Whether an idle origin connection is still open and has sent nothing since its last response.
/// Bytes arriving unasked (a late, smuggled or garbage response) must never be read as the answer to
/// the next request, and a closed connection would only fail it. One non-blocking peek tells both;
/// over TLS, a close_notify or any other record counts as bytes too, and so does plaintext rustls
/// decrypted already.
fn is_quiet(stream: &mut Stream) -> bool {
    use rustix::net::{RecvFlags, recv};
    let mut byte = [0u8; 1];
    matches!(
        recv(
            stream.tcp(),
            &mut byte,
            RecvFlags::PEEK | RecvFlags::DONTWAIT
        ),
        Err(rustix::io::Errno::AGAIN)
    ) && !stream.has_buffered_input()
}

/// Resolves and connects, trying each address in turn within the timeout; for https, then runs the
/// TLS handshake, verifying the origin's certificate.
pub fn dial(
    rules: &DestRules,
    scheme: Scheme,
    host: &str,
    port: u16,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> Result<UpstreamConn, DialError> {
    let mut tcp = dial_tcp(rules, host, port, timeout).map_err(DialError::Tcp)?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(DialError::Tcp)?;
    let _ = tcp.set_nodelay(true);
    let stream = match scheme {
        Scheme::Http => Stream::Plain(tcp),
        Scheme::Https => {
            let tls = tls.ok_or(DialError::NoTls)?;
            Stream::Tls(Box::new(tls.connect(host, tcp).map_err(DialError::Tls)?))
        }
    };
    Ok(UpstreamConn {
        stream,
        buf: ReadBuf::with_capacity(ORIGIN_BUF),
        reused: false,
        parent: None,
    })
}

/// An https origin connection over `tcp`, a tunnel a parent proxy opened to it: the TLS handshake
/// runs inside the tunnel, end to end with the origin.
pub fn tls_over(
    host: &str,
    mut tcp: Socket,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> Result<UpstreamConn, DialError> {
    tcp.set_read_timeout(Some(timeout))
        .map_err(DialError::Tcp)?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(DialError::Tcp)?;
    let _ = tcp.set_nodelay(true);
    let tls = tls.ok_or(DialError::NoTls)?;
    let stream = Stream::Tls(Box::new(tls.connect(host, tcp).map_err(DialError::Tls)?));
    Ok(UpstreamConn {
        stream,
        buf: ReadBuf::with_capacity(ORIGIN_BUF),
        reused: false,
        parent: None,
    })
}

/// A plain TCP connection to `host:port`, as for a CONNECT tunnel: resolves, skips the addresses
/// the destination rules refuse (the error names the rule when no other address connects), and
/// tries the rest in turn within the timeout. Every outgoing connection goes through here: to
/// origins, tunnels and parent proxies alike.
pub fn dial_tcp(rules: &DestRules, host: &str, port: u16, timeout: Duration) -> io::Result<Socket> {
    let addrs = crate::net::resolve::resolve(host, port, timeout)?;
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    let mut denied = None;
    for addr in addrs {
        if let Err(refusal) = rules.check_for(host, addr) {
            denied = Some(refusal);
            continue;
        }
        match Socket::connect(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = e,
        }
    }
    // A refused address says more than a failure on another one (`localhost` as ::1 and 127.0.0.1).
    Err(denied.map(dest::into_io).unwrap_or(last_error))
}
