//! The origins the pinning tests stall the proxy with: several listeners served by one polling
//! thread that answer late, or stream `100 Continue` for as long as they like, and the 100 MiB
//! cacheable response, written in chunks so the test never holds it.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// The large cached response the never-readers ask for, and the chunks its origin writes it in.
pub const BIG: usize = 100 << 20;
const BIG_CHUNK: usize = 64 * 1024;
/// No origin thread of this file outlives this, even if a test fails and forgets it.
const LIFETIME: Duration = Duration::from_secs(60);

/// Sets a flag when dropped, so the origins a test started stop with it, passing or failing.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a stalling origin does once a request head has arrived.
#[derive(Clone, Copy)]
pub enum Stall {
    /// Nothing (any body is read and dropped), then a 200 after this long.
    Answer(Duration),
    /// `100 Continue` every `every`, then a 200 after `answer`, or never.
    Continue {
        every: Duration,
        answer: Option<Duration>,
    },
}

/// Origins on their own listeners, all served by one polling thread, that count request heads.
pub struct StallingOrigins {
    addrs: Vec<SocketAddr>,
    heads: Arc<AtomicUsize>,
    _stop: StopOnDrop,
}

impl StallingOrigins {
    pub fn start(listeners: usize, stall: Stall) -> StallingOrigins {
        let listeners: Vec<TcpListener> = (0..listeners)
            .map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind");
                l.set_nonblocking(true).expect("non-blocking listener");
                l
            })
            .collect();
        let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let heads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&heads), Arc::clone(&stop));
        thread::Builder::new()
            .name("stalling-origin".into())
            .spawn(move || run_stalling(listeners, stall, &h, &s))
            .expect("origin thread");
        StallingOrigins {
            addrs,
            heads,
            _stop: StopOnDrop(stop),
        }
    }

    pub fn url(&self, origin: usize, path: &str) -> String {
        format!("http://{}{path}", self.addrs[origin])
    }

    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

/// One connection to a stalling origin.
struct Held {
    stream: TcpStream,
    head: Vec<u8>,
    since: Option<Instant>,
    last_sent: Instant,
}

fn run_stalling(listeners: Vec<TcpListener>, stall: Stall, heads: &AtomicUsize, stop: &AtomicBool) {
    let end = Instant::now() + LIFETIME;
    let mut held: Vec<Held> = Vec::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        for listener in &listeners {
            while let Ok((stream, _)) = listener.accept() {
                if stream.set_nonblocking(true).is_ok() {
                    held.push(Held {
                        stream,
                        head: Vec::new(),
                        since: None,
                        last_sent: Instant::now(),
                    });
                }
            }
        }
        let now = Instant::now();
        held.retain_mut(|h| h.step(stall, now, heads));
        thread::sleep(Duration::from_millis(10));
    }
}

impl Held {
    /// Reads what has come and answers or stalls as `stall` says; false once the connection is over.
    fn step(&mut self, stall: Stall, now: Instant, heads: &AtomicUsize) -> bool {
        let mut buf = [0u8; 8192];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) if self.since.is_none() => {
                    self.head.extend_from_slice(&buf[..n]);
                    if self.head.windows(4).any(|w| w == b"\r\n\r\n") {
                        self.since = Some(now);
                        heads.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let Some(since) = self.since else {
            return true;
        };
        let (every, answer) = match stall {
            Stall::Answer(after) => (None, Some(after)),
            Stall::Continue { every, answer } => (Some(every), answer),
        };
        if answer.is_some_and(|after| now - since >= after) {
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlate";
            let _ = self.stream.write_all(answer);
            return false;
        }
        if every.is_some_and(|every| now - self.last_sent >= every) {
            self.last_sent = now;
            match self.stream.write(b"HTTP/1.1 100 Continue\r\n\r\n") {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// An origin for the 100 MiB response (cacheable for an hour), written from one 64 KiB chunk so the
/// test never holds the body; counts its requests.
pub fn big_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    counting_raw_server(|mut stream| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nCache-Control: max-age=3600\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        let chunk = vec![b'b'; BIG_CHUNK];
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        for _ in 0..BIG / BIG_CHUNK {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    })
}

/// A GET through the proxy whose body is counted and dropped: status, X-Cache and body length.
pub fn get_counting(proxy: SocketAddr, url: &str) -> (u16, Option<String>, u64) {
    let mut stream = connect(proxy);
    write!(
        stream,
        "GET {url} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut x_cache, mut length) = (None, 0u64);
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        let value = value.trim().to_string();
        if name.eq_ignore_ascii_case("x-cache") {
            x_cache = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().unwrap_or(0);
        }
    }
    let copied = io::copy(&mut reader.take(length), &mut io::sink()).expect("body");
    (status, x_cache, copied)
}
