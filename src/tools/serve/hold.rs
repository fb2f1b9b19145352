//! Holding a connection open without answering, for the `/getbalance` timeout fault.
//!
//! A worker that slept through `--fault-delay` would be lost to every other client for that long, so
//! the worker hands the socket to one "holder" thread and moves on. Every hold lasts the same delay,
//! so deadlines arrive in order and a FIFO queue is a priority queue:
//!
//! ```text
//!  worker ──hold(socket)──> channel ──> holder: VecDeque<(deadline, socket)>
//!                                        └─ at each deadline: drop = close, no response
//! ```
//! The number held is capped; beyond the cap a connection is closed at once (and logged), so a flood
//! of timeouts costs bounded file descriptors.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::runtime::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::net::conn::ConnSlot;

/// The most connections held at once by default.
pub const DEFAULT_CAP: usize = 1024;

struct Held {
    deadline: Instant,
    peer: SocketAddr,
    _stream: TcpStream,
    /// Keeps the client counted as connected while it waits.
    _slot: ConnSlot,
}

enum Msg {
    Hold(Held),
    Stop,
}

/// Whether a connection was taken for holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldResult {
    Held,
    /// The holder is full (or stopped); the connection was closed at once.
    ClosedNow,
}

/// The workers' handle to the holder thread.
pub struct Holder {
    delay: Duration,
    cap: usize,
    held: Arc<AtomicUsize>,
    inbox: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Holder {
    /// Starts the holder thread; every connection handed to it is closed `delay` later.
    pub fn start(delay: Duration, cap: usize) -> io::Result<Holder> {
        let (inbox, queue) = crossbeam_channel::unbounded();
        let held = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&held);
        let thread = std::thread::Builder::new()
            .name("serve-holder".into())
            .spawn(move || run(&queue, &counter))?;
        Ok(Holder {
            delay,
            cap,
            held,
            inbox,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Keeps `stream` open, unanswered, until the delay has passed.
    pub fn hold(&self, stream: TcpStream, peer: SocketAddr, slot: ConnSlot) -> HoldResult {
        // Reserve a place first so concurrent workers cannot overshoot the cap.
        if self.held.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.held.fetch_sub(1, Ordering::AcqRel);
            log::warn!(
                "already holding {} timed-out connections; closing the one from {peer} at once",
                self.cap
            );
            return HoldResult::ClosedNow;
        }
        let held = Held {
            deadline: Instant::now() + self.delay,
            peer,
            _stream: stream,
            _slot: slot,
        };
        match self.inbox.send(Msg::Hold(held)) {
            Ok(()) => HoldResult::Held,
            Err(_) => {
                self.held.fetch_sub(1, Ordering::AcqRel);
                HoldResult::ClosedNow
            }
        }
    }

    /// How many connections are being held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Closes everything still held and joins the thread. Later holds close at once.
    pub fn stop(&self) {
        let _ = self.inbox.send(Msg::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn run(inbox: &Receiver<Msg>, held: &AtomicUsize) {
    let mut queue: VecDeque<Held> = VecDeque::new();
    loop {
        let msg = match queue.front() {
            Some(first) => {
                inbox.recv_timeout(first.deadline.saturating_duration_since(Instant::now()))
            }
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Hold(conn)) => queue.push_back(conn),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        while queue.front().is_some_and(|c| c.deadline <= now) {
            if let Some(conn) = queue.pop_front() {
                log::debug!("closing held connection from {}", conn.peer);
                held.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    held.fetch_sub(queue.len(), Ordering::AcqRel);
}
