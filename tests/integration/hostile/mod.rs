//! Hostile traffic against the real binary (issue 6, hardening): `requests` sends a catalogue of
//! malformed and smuggling-shaped requests to `porter proxy` and `porter serve`, `responses` has a raw
//! origin answer garbage through a caching proxy, `slow` holds slowloris clients and a client that
//! never reads, `crash` kills the proxy and the origin server with SIGKILL mid-write and restarts
//! them on the same files, and `pinning` holds every kind of slow peer at once while a new client's
//! hit must still be answered within 1 s.
//!
//! Every case is a row in a table with its name, its bytes and what must come back; the name is in
//! every assertion message. Nothing here measures time but `pinning`, which asserts the 1 s
//! bound and each peer's own deadline; elsewhere deadlines only bound loops.

mod acl;
mod crash;
mod pinning;
mod poisoning;
mod purge;
mod requests;
mod resources;
mod responses;
mod slow;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use porter::http::body::{self, BodyReader};
use porter::http::{Limits, ReadBuf, parse};

/// How long a test waits for a peer that should answer or close at once.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes read back for one case; every answer here is far smaller.
const MAX_ANSWER: usize = 4 << 20;

/// What came back on a connection, read until the peer closed it.
#[derive(Debug)]
pub struct Answer {
    /// The final (non-1xx) status, if a status line came.
    pub status: Option<u16>,
    /// The bytes of the final response, from its status line on.
    pub response: Vec<u8>,
    /// The peer closed (FIN or reset) within the timeout.
    pub closed: bool,
}

impl Answer {
    /// Whether the final response's body arrived whole, by its own framing.
    pub fn body_complete(&self, method: &str) -> bool {
        let Ok(Some((head, len))) = parse::response(&self.response, &Limits::default()) else {
            return false;
        };
        let Ok(mode) = body::response_mode(&method.into(), head.status, &head.headers) else {
            return false;
        };
        let mut rest = &self.response[len..];
        let mut buf = ReadBuf::with_capacity(64 * 1024);
        let mut reader = BodyReader::new(mode, &mut buf, &mut rest);
        let mut sink = Vec::new();
        reader.read_to_end(&mut sink).is_ok() && reader.is_done()
    }

    /// A header of the final response.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = parse::response(&self.response, &Limits::default()).ok()??;
        head.headers.get(name).map(str::to_string)
    }

    /// The start of the response, for assertion messages.
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.response[..self.response.len().min(200)]).into_owned()
    }
}

/// Sends `bytes` on a new connection, half-closes it if asked, and reads until the peer closes, the
/// read times out, or the connection is reset.
pub fn send(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    // A peer may answer and close before it has read everything; that is not the test's failure.
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    read_until_closed(&mut stream, None)
}

/// Reads what a peer sends until it closes (or resets, or stays silent past the read timeout, or
/// `deadline` passes).
pub fn read_until_closed(stream: &mut TcpStream, deadline: Option<Instant>) -> Answer {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            stream.set_read_timeout(Some(left)).unwrap();
        }
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > MAX_ANSWER {
                    break false;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false;
            }
            Err(_) => break true,
        }
    };
    let (status, response) = final_response(&raw);
    Answer {
        status,
        response,
        closed,
    }
}

/// A process's resident memory, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Skips interim (1xx) responses; returns the final status and the bytes from its status line on.
fn final_response(raw: &[u8]) -> (Option<u16>, Vec<u8>) {
    let mut rest = raw;
    loop {
        match parse::response(rest, &Limits::default()) {
            Ok(Some((head, len))) if (100..200).contains(&head.status) && head.status != 101 => {
                rest = &rest[len..];
            }
            Ok(Some((head, _))) => return (Some(head.status), rest.to_vec()),
            _ => {
                // Not a parseable head: take the status digits if there are any.
                let status = rest
                    .strip_prefix(b"HTTP/1.1 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| d.parse().ok());
                return (status, rest.to_vec());
            }
        }
    }
}
