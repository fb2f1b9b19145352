//! The attacking connections of the combined pinning test, all non-blocking and driven by one
//! thread: slow bodies trickle and then fall silent, never-readers are left alone until their stall
//! deadline has surely passed, and the rest are read as answers come. `verdict` says whether each
//! was cut off by its own deadline.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::super::{Answer, final_response};
use super::{CLIENT_TIMEOUT, EARLY, ORIGIN_TIMEOUT, SLACK};
use crate::util::IO_TIMEOUT;

/// A slow-body client sends one byte a second for this many rounds (while the probes run), then
/// falls silent, so the body-progress deadline (`--client-timeout`) must cut it off.
const TRICKLE_ROUNDS: u32 = 4;
const TRICKLE_EVERY: Duration = Duration::from_secs(1);
/// Reading more than this from a never-reader means the proxy was still relaying to it.
const NEVER_READER_CAP: usize = 8 << 20;

/// A connection with a small receive buffer, set before connecting so the window stays small.
pub fn connect_small_window(addr: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    sockopt::set_socket_recv_buffer_size(&fd, 4096).expect("SO_RCVBUF");
    rustix::net::connect(&fd, &addr).expect("connect");
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// The four kinds of slow peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    SlowBody,
    NeverReader,
    SlowOrigin,
    EndlessContinue,
}

/// One attacking connection, non-blocking once its request is sent.
pub struct Peer {
    pub attack: Attack,
    stream: TcpStream,
    sent: Instant,
    last_write: Instant,
    /// The first bytes that came back: enough for the status line and head.
    start: Vec<u8>,
    received: usize,
    /// The final status, and when it came.
    status: Option<(u16, Instant)>,
    closed: Option<Instant>,
    /// A never-reader the proxy was still relaying to when the test read it.
    flooded: bool,
}

impl Peer {
    pub fn open(attack: Attack, mut stream: TcpStream, request: &[u8]) -> Peer {
        stream.write_all(request).expect("send the request head");
        stream.set_nonblocking(true).expect("non-blocking");
        let now = Instant::now();
        Peer {
            attack,
            stream,
            sent: now,
            last_write: now,
            start: Vec::new(),
            received: 0,
            status: None,
            closed: None,
            flooded: false,
        }
    }

    pub fn done(&self) -> bool {
        self.closed.is_some() || self.flooded
    }

    /// Whether the response has begun, seen without taking anything from the receive buffer.
    pub fn answered(&self) -> bool {
        self.done() || self.stream.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0)
    }

    pub fn trickle(&mut self) {
        let now = Instant::now();
        match self.stream.write(b"x") {
            Ok(_) => self.last_write = now,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => self.closed = Some(now),
        }
    }

    /// Takes what has come; each event is timed when it is seen, not when the round began.
    pub fn read_available(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = Some(Instant::now());
                    return;
                }
                Ok(n) => {
                    self.received += n;
                    let keep = n.min(8192usize.saturating_sub(self.start.len()));
                    self.start.extend_from_slice(&buf[..keep]);
                    if self.status.is_none()
                        && let (Some(status @ 200..), _) = final_response(&self.start)
                    {
                        self.status = Some((status, Instant::now()));
                    }
                    if self.received > NEVER_READER_CAP {
                        self.flooded = true;
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = Some(Instant::now());
                    return;
                }
            }
        }
    }

    /// What came back, as the other hostile tests see an answer.
    pub fn answer(&self) -> Answer {
        let (status, response) = final_response(&self.start);
        Answer {
            status,
            response,
            closed: self.closed.is_some(),
        }
    }
}

/// Drives every attacker until each is closed or `end`: slow bodies trickle for their rounds, and
/// the never-readers are read only from `read_never_readers` on, when the proxy must have cut them
/// off. Counts in `answered` the never-readers whose response has begun.
pub fn drive(
    mut peers: Vec<Peer>,
    read_never_readers: Instant,
    end: Instant,
    answered: &AtomicUsize,
) -> Vec<Peer> {
    let mut next_trickle = Instant::now() + TRICKLE_EVERY;
    let mut rounds = 0;
    while Instant::now() < end && !peers.iter().all(Peer::done) {
        let now = Instant::now();
        if rounds < TRICKLE_ROUNDS && now >= next_trickle {
            for peer in peers.iter_mut() {
                if peer.attack == Attack::SlowBody && !peer.done() {
                    peer.trickle();
                }
            }
            rounds += 1;
            next_trickle += TRICKLE_EVERY;
        }
        let mut started = 0;
        for peer in peers.iter_mut().filter(|p| !p.done()) {
            if peer.attack == Attack::NeverReader && now < read_never_readers {
                started += usize::from(peer.answered());
            } else {
                peer.read_available();
            }
        }
        if now < read_never_readers {
            answered.store(started, Ordering::SeqCst);
        }
        thread::sleep(Duration::from_millis(20));
    }
    peers
}

/// Whether a peer was cut off by its own deadline: `Err` says how it was not.
pub fn verdict(peer: &Peer) -> Result<(), String> {
    let answer = peer.answer();
    let Some(closed) = peer.closed else {
        return Err(if peer.flooded {
            format!("still being relayed to: read {} bytes", peer.received)
        } else {
            format!(
                "still open at the end ({:?}): {}",
                answer.status,
                answer.excerpt()
            )
        });
    };
    match peer.attack {
        // A body that stops coming is cut off by the body-progress deadline, quietly or with 408,
        // not before the client timeout has passed since the head.
        Attack::SlowBody => {
            if !matches!(answer.status, None | Some(408)) {
                return Err(format!("answered {}", answer.excerpt()));
            }
            let after_last = closed - peer.last_write;
            let after_head = closed - peer.sent;
            if after_last > CLIENT_TIMEOUT + SLACK || after_head + EARLY < CLIENT_TIMEOUT {
                return Err(format!(
                    "closed {after_last:?} after its last byte, {after_head:?} after its head"
                ));
            }
        }
        // The hit began (from the cache) and was cut off well short of its 100 MiB.
        Attack::NeverReader => {
            if answer.status != Some(200) || answer.header("x-cache").as_deref() != Some("HIT") {
                return Err(format!("was not a hit: {}", answer.excerpt()));
            }
        }
        Attack::SlowOrigin => match peer.status {
            Some((504, at)) => {
                let waited = at - peer.sent;
                if waited + EARLY < ORIGIN_TIMEOUT || waited > ORIGIN_TIMEOUT + SLACK {
                    return Err(format!("504 after {waited:?}"));
                }
            }
            _ => return Err(format!("answered {}", answer.excerpt())),
        },
        // Assumed: interim responses count against the origin timeout as a whole (each one is a
        // successful read, so a per-read timeout never fires), then 502 or 504.
        Attack::EndlessContinue => match peer.status {
            Some((502 | 504, at)) if at - peer.sent <= ORIGIN_TIMEOUT + SLACK => {}
            Some((status, at)) => {
                return Err(format!("{status} after {:?}", at - peer.sent));
            }
            None => return Err(format!("closed with no final status: {}", answer.excerpt())),
        },
    }
    Ok(())
}

/// For each kind of peer, how many were closed and the range of their lifetimes, for the log.
pub fn summary(peers: &[Peer]) -> String {
    let kinds = [
        Attack::SlowBody,
        Attack::NeverReader,
        Attack::SlowOrigin,
        Attack::EndlessContinue,
    ];
    let mut lines = Vec::new();
    for kind in kinds {
        let of_kind: Vec<&Peer> = peers.iter().filter(|p| p.attack == kind).collect();
        let lives: Vec<Duration> = of_kind
            .iter()
            .filter_map(|p| p.closed.map(|c| c - p.sent))
            .collect();
        let most = of_kind.iter().map(|p| p.received).max().unwrap_or(0);
        // Each final status with the range of times it came after the request.
        let mut statuses: BTreeMap<u16, (Duration, Duration)> = BTreeMap::new();
        for (status, at) in of_kind
            .iter()
            .filter_map(|p| p.status.map(|(s, at)| (s, at - p.sent)))
        {
            let range = statuses.entry(status).or_insert((at, at));
            *range = (range.0.min(at), range.1.max(at));
        }
        let statuses: Vec<String> = statuses
            .iter()
            .map(|(status, (first, last))| format!("{status} after {first:.1?}..{last:.1?}"))
            .collect();
        lines.push(format!(
            "{kind:?}: {}/{} closed, after {:.1?}..{:.1?}, at most {most} bytes received; \
             final status: {}",
            lives.len(),
            of_kind.len(),
            lives.iter().min(),
            lives.iter().max(),
            if statuses.is_empty() {
                "none".to_string()
            } else {
                statuses.join(", ")
            }
        ));
    }
    lines.join("\n")
}
