//! Connections to origin servers: connecting with a timeout (each resolved address checked against
//! the destination rules first), and a small pool of idle keep-alive connections per host so repeated
//! requests skip the TCP handshake.

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
pub struct OriginConn {
    pub stream: TcpStream,
    pub buf: ReadBuf,
    /// Whether it came from the pool: a failure before any response byte may then be retried.
    pub reused: bool,
}

type OriginKey = (String, u16);

/// Idle origin connections, most recently used last, and the rules every new connection obeys.
pub struct OriginPool {
    idle: Mutex<HashMap<OriginKey, Vec<(OriginConn, Instant)>>>,
    rules: DestRules,
}

impl OriginPool {
    pub fn new(rules: DestRules) -> OriginPool {
        OriginPool {
            idle: Mutex::default(),
            rules,
        }
    }

    /// A pooled connection to `host:port`, or a new one.
    pub fn checkout(&self, host: &str, port: u16, timeout: Duration) -> io::Result<OriginConn> {
        if let Some(conn) = self.take_idle(host, port) {
            return Ok(conn);
        }
        self.connect(host, port, timeout)
    }

    /// A new connection with its read buffer and timeouts.
    pub fn connect(&self, host: &str, port: u16, timeout: Duration) -> io::Result<OriginConn> {
        let stream = self.connect_stream(host, port, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let _ = stream.set_nodelay(true);
        Ok(OriginConn {
            stream,
            buf: ReadBuf::with_capacity(ORIGIN_BUF),
            reused: false,
        })
    }

    /// A plain TCP connection to `host:port`, as for a CONNECT tunnel: resolves, skips the addresses
    /// the destination rules refuse (the error names the rule when no other address connects), and
    /// tries the rest in turn within the timeout.
    pub fn connect_stream(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
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

    fn take_idle(&self, host: &str, port: u16) -> Option<OriginConn> {
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
    pub fn checkin(&self, host: &str, port: u16, conn: OriginConn) {
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
