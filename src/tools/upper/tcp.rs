//! The TCP echo: a thread per client up to [`MAX_CLIENTS`], each echoing chunk by chunk until the
//! client hangs up or stays silent for [`IDLE_TIMEOUT`]. Over the cap, a new client is closed at once
//! rather than queued, so a flood costs the server nothing but the accept.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use super::{UpperError, announce, print_reply, uppercase};

/// Most clients served at once.
const MAX_CLIENTS: usize = 256;
/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes echoed per read.
const CHUNK: usize = 4096;

/// Counts a client while its thread lives.
struct ClientSlot(Arc<AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts clients until the process is stopped.
pub fn serve(listen: SocketAddr) -> Result<(), UpperError> {
    let listener = TcpListener::bind(listen).map_err(|error| UpperError::Listen {
        addr: listen,
        error,
    })?;
    let local = listener.local_addr().map_err(|error| UpperError::Listen {
        addr: listen,
        error,
    })?;
    announce(local)?;
    let active = Arc::new(AtomicUsize::new(0));
    let mut next_id: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            log::warn!("closing {peer}: {MAX_CLIENTS} clients are connected already");
            continue;
        }
        let slot = ClientSlot(Arc::clone(&active));
        next_id += 1;
        let spawned = thread::Builder::new()
            .name(format!("upper-tcp-{next_id}"))
            .spawn(move || {
                let _slot = slot;
                match echo(stream) {
                    Ok(()) => log::debug!("{peer} disconnected"),
                    Err(e) => log::debug!("{peer}: {e}"),
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot serve {peer}: {e}");
        }
    }
}

/// Echoes one client's bytes, uppercased, until it closes the connection.
fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut buf = [0u8; CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        uppercase(&mut buf[..n]);
        stream.write_all(&buf[..n])?;
    }
}

/// Sends each message on one connection and prints each reply, which is as long as its message.
pub fn send(
    target: &str,
    addr: SocketAddr,
    timeout: Duration,
    messages: impl Iterator<Item = Result<Vec<u8>, UpperError>>,
) -> Result<(), UpperError> {
    let error = |e: io::Error| match e.kind() {
        io::ErrorKind::ConnectionRefused => UpperError::Refused {
            target: target.to_string(),
        },
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => UpperError::Timeout {
            target: target.to_string(),
            after: timeout,
        },
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => UpperError::Closed {
            target: target.to_string(),
        },
        _ => UpperError::Io {
            target: target.to_string(),
            error: e,
        },
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(error)?;
    stream.set_read_timeout(Some(timeout)).map_err(error)?;
    stream.set_write_timeout(Some(timeout)).map_err(error)?;
    for message in messages {
        let message = message?;
        stream.write_all(&message).map_err(error)?;
        let mut reply = vec![0u8; message.len()];
        stream.read_exact(&mut reply).map_err(error)?;
        print_reply(target, &reply);
    }
    Ok(())
}
