//! CONNECT tunnels relayed by one event-driven thread, so a long HTTPS session costs two sockets and
//! two small buffers, never a worker.
//!
//! ```text
//!  client ──read──> [up buffer] ──write──> origin
//!  client <─write── [down buffer] <──read── origin
//! ```
//! Each direction reads until its buffer is full or the socket would block, and writes what it holds.
//! A read of end-of-stream half-closes the other side; the tunnel ends when both directions have.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::net::conn::ConnSlot;
use crate::proxy::ops::metrics::{AccessEntry, Metrics};

const WAKER: Token = Token(usize::MAX);
const PIPE_BUF: usize = 32 * 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A tunnel ready to relay: both sockets connected, the 200 already sent to the client.
pub struct NewTunnel {
    pub client: std::net::TcpStream,
    pub origin: std::net::TcpStream,
    /// Keeps the client counted as connected while the tunnel lives.
    pub slot: ConnSlot,
    pub entry: AccessEntry,
}

/// Hands tunnels to the relay thread.
#[derive(Clone)]
pub struct TunnelHandle {
    inbox: Sender<NewTunnel>,
    waker: Arc<Waker>,
}

impl TunnelHandle {
    pub fn start(
        idle_timeout: Duration,
        metrics: Arc<Metrics>,
        shutdown: crate::net::Shutdown,
    ) -> io::Result<TunnelHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        shutdown.add_waker(Arc::clone(&waker));
        let (inbox, new_tunnels) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("tunnels".into())
            .spawn(move || {
                let mut relay = Relay {
                    poll,
                    new_tunnels,
                    tunnels: HashMap::new(),
                    next_id: 0,
                    idle_timeout,
                    metrics,
                };
                if let Err(e) = relay.run(&shutdown) {
                    log::error!("tunnel relay stopped: {e}");
                }
            })?;
        Ok(TunnelHandle { inbox, waker })
    }

    /// Starts relaying; if the relay has stopped the sockets are simply closed.
    pub fn relay(&self, tunnel: NewTunnel) {
        if self.inbox.send(tunnel).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// One direction of a tunnel.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The source said end-of-stream.
    eof: bool,
    /// The destination has been half-closed after `eof` and an empty buffer.
    closed: bool,
    bytes: u64,
}

impl Pipe {
    fn new() -> Self {
        Pipe {
            buf: vec![0; PIPE_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            closed: false,
            bytes: 0,
        }
    }

    /// Moves bytes from `src` to `dst` until one of them would block. Returns whether anything moved.
    fn pump(&mut self, src: &mut TcpStream, dst: &mut TcpStream) -> io::Result<bool> {
        let mut moved = false;
        loop {
            if self.start < self.end {
                match dst.write(&self.buf[self.start..self.end]) {
                    Ok(n) => {
                        self.start += n;
                        self.bytes += n as u64;
                        moved = true;
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if self.eof {
                if !self.closed {
                    let _ = dst.shutdown(Shutdown::Write);
                    self.closed = true;
                }
                return Ok(moved);
            }
            match src.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.end = n;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

struct Tunnel {
    client: TcpStream,
    origin: TcpStream,
    up: Pipe,
    down: Pipe,
    last_active: Instant,
    entry: AccessEntry,
    _slot: ConnSlot,
}

struct Relay {
    poll: Poll,
    new_tunnels: Receiver<NewTunnel>,
    tunnels: HashMap<usize, Tunnel>,
    next_id: usize,
    idle_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Relay {
    fn run(&mut self, shutdown: &crate::net::Shutdown) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut last_sweep = Instant::now();
        while !shutdown.is_requested() {
            if let Err(e) = self.poll.poll(&mut events, Some(SWEEP_EVERY)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                if event.token() != WAKER {
                    self.service(event.token().0 / 2);
                }
            }
            self.take_new();
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = Instant::now();
            }
        }
        for id in self.tunnels.keys().copied().collect::<Vec<_>>() {
            self.close(id);
        }
        Ok(())
    }

    fn take_new(&mut self) {
        while let Ok(new) = self.new_tunnels.try_recv() {
            let id = self.next_id;
            self.next_id = (self.next_id + 1) % (usize::MAX / 2 - 1);
            let (Ok(()), Ok(())) = (
                new.client.set_nonblocking(true),
                new.origin.set_nonblocking(true),
            ) else {
                continue;
            };
            let mut tunnel = Tunnel {
                client: TcpStream::from_std(new.client),
                origin: TcpStream::from_std(new.origin),
                up: Pipe::new(),
                down: Pipe::new(),
                last_active: Instant::now(),
                entry: new.entry,
                _slot: new.slot,
            };
            let both = Interest::READABLE | Interest::WRITABLE;
            let registry = self.poll.registry();
            let registered = registry
                .register(&mut tunnel.client, Token(id * 2), both)
                .and_then(|()| registry.register(&mut tunnel.origin, Token(id * 2 + 1), both));
            if let Err(e) = registered {
                log::warn!("cannot relay tunnel for {}: {e}", tunnel.entry.client);
                continue;
            }
            self.tunnels.insert(id, tunnel);
            self.service(id);
        }
    }

    /// Pumps both directions of a tunnel; closes it when both are done or either fails.
    fn service(&mut self, id: usize) {
        let Some(t) = self.tunnels.get_mut(&id) else {
            return;
        };
        let up = t.up.pump(&mut t.client, &mut t.origin);
        let down = t.down.pump(&mut t.origin, &mut t.client);
        match (up, down) {
            (Ok(a), Ok(b)) => {
                if a || b {
                    t.last_active = Instant::now();
                }
                if t.up.closed && t.down.closed {
                    self.close(id);
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                log::debug!("tunnel {} ended: {e}", t.entry.url);
                self.close(id);
            }
        }
    }

    fn sweep(&mut self) {
        let idle_timeout = self.idle_timeout;
        let idle: Vec<usize> = self
            .tunnels
            .iter()
            .filter(|(_, t)| t.last_active.elapsed() >= idle_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id);
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut t) = self.tunnels.remove(&id) {
            let registry = self.poll.registry();
            let _ = registry.deregister(&mut t.client);
            let _ = registry.deregister(&mut t.origin);
            t.entry.bytes = t.down.bytes;
            t.entry.finish(&self.metrics);
        }
    }
}
