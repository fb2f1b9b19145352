//! The upstream side of the proxy: dialling origin servers with a timeout (each resolved address
//! checked against the destination rules first, see `dest`), and a small pool of idle keep-alive
//! connections per host so repeated requests skip the TCP handshake. (`crate::origin` is
//! the file server; this module only talks to whatever origin a request names.)

use std::collections::HashMap;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::dest::{self, DestRules};
use crate::http::ReadBuf;

/// Idle connections kept per origin, and in all.
const MAX_IDLE_PER_ORIGIN: usize = 32;
const MAX_IDLE_TOTAL: usize = 512;
/// Origins often close idle connections after 5 to 60 s; reusing one older than this risks a race.
const MAX_IDLE_AGE: Duration = Duration::from_secs(4);
/// Response head buffer per origin connection: the head limit plus room for the start of the body.
const ORIGIN_BUF: usize = 80 * 1024;

/// A connection to an origin with its read buffer.
pub struct UpstreamConn {
    pub stream: TcpStream,
    pub buf: ReadBuf,
    /// Whether it came from the pool: a failure before any response byte may then be retried.
    pub reused: bool,
}

type UpstreamKey = (String, u16);

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

    /// A pooled connection to `host:port`, or a new one.
    pub fn checkout(&self, host: &str, port: u16, timeout: Duration) -> io::Result<UpstreamConn> {
        if let Some(conn) = self.take_idle(host, port) {
            return Ok(conn);
        }
        self.dial(host, port, timeout)
    }

    /// Resolves and connects, trying each address the rules allow in turn within the timeout.
    pub fn dial(&self, host: &str, port: u16, timeout: Duration) -> io::Result<UpstreamConn> {
        let stream = self.dial_tcp(host, port, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let _ = stream.set_nodelay(true);
        Ok(UpstreamConn {
            stream,
            buf: ReadBuf::with_capacity(ORIGIN_BUF),
            reused: false,
        })
    }

    /// A plain TCP connection to `host:port`, as for a CONNECT tunnel: resolves, skips the addresses
    /// the destination rules refuse (the error names the rule when no other address connects), and
    /// tries the rest in turn within the timeout.
    pub fn dial_tcp(&self, host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
        let addrs = (host, port).to_socket_addrs()?;
        let mut last_error =
            io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
        let mut denied = None;
        for addr in addrs {
            if let Err(refusal) = self.rules.check(addr) {
                denied = Some(refusal);
                continue;
            }
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) => last_error = e,
            }
        }
        // A refused address says more than a failure on another one (`localhost` as ::1 and 127.0.0.1).
        Err(denied.map(dest::into_io).unwrap_or(last_error))
    }

    fn take_idle(&self, host: &str, port: u16) -> Option<UpstreamConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let key = (host.to_string(), port);
        let list = idle.get_mut(&key)?;
        while let Some((mut conn, since)) = list.pop() {
            if since.elapsed() < MAX_IDLE_AGE && is_quiet(&conn.stream) {
                conn.reused = true;
                return Some(conn);
            }
        }
        idle.remove(&key);
        None
    }

    /// Returns a connection whose last response was read completely, for reuse.
    pub fn checkin(&self, host: &str, port: u16, conn: UpstreamConn) {
        if !conn.buf.is_empty() {
            return; // the origin sent bytes beyond the response: not trustworthy
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        if total >= MAX_IDLE_TOTAL {
            return;
        }
        let list = idle.entry((host.to_string(), port)).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push((conn, Instant::now()));
        }
    }
}

/// Whether an idle origin connection is still open and has sent nothing since its last response.
/// Bytes arriving unasked (a late, smuggled or garbage response) must never be read as the answer to
/// the next request, and a closed connection would only fail it. One non-blocking peek tells both.
fn is_quiet(stream: &TcpStream) -> bool {
    use rustix::net::{RecvFlags, recv};
    let mut byte = [0u8; 1];
    matches!(
        recv(stream, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Err(rustix::io::Errno::AGAIN)
    )
}
