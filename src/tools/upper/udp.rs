//! The UDP echo: one reply datagram per datagram, from a single thread (there is no connection to
//! hold, so one thread serves every client). The client waits `--timeout` for each reply, and says
//! clearly when none comes: UDP never tells a sender whether anything arrived.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use super::{UpperError, announce, print_reply, uppercase};

/// The largest UDP payload over IPv4 or IPv6 without jumbograms.
const MAX_DATAGRAM: usize = 65_535;

/// Answers datagrams until the process is stopped.
pub fn serve(listen: SocketAddr) -> Result<(), UpperError> {
    let socket = UdpSocket::bind(listen).map_err(|error| UpperError::Listen {
        addr: listen,
        error,
    })?;
    let local = socket.local_addr().map_err(|error| UpperError::Listen {
        addr: listen,
        error,
    })?;
    announce(local)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) => {
                log::debug!("receive failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        uppercase(&mut buf[..n]);
        if let Err(e) = socket.send_to(&buf[..n], peer) {
            log::debug!("reply to {peer} failed: {e}");
        }
    }
}

/// Sends each message as a datagram and prints the reply datagram.
pub fn send(
    target: &str,
    addr: SocketAddr,
    timeout: Duration,
    messages: impl Iterator<Item = Result<Vec<u8>, UpperError>>,
) -> Result<(), UpperError> {
    let io_error = |error: io::Error| UpperError::Io {
        target: target.to_string(),
        error,
    };
    let local: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local).map_err(io_error)?;
    // Connected, so only the server's datagrams are received, and an ICMP "port unreachable" is
    // reported to us.
    socket.connect(addr).map_err(io_error)?;
    socket.set_read_timeout(Some(timeout)).map_err(io_error)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    for message in messages {
        let message = message?;
        let no_reply = |port_unreachable| UpperError::NoUdpReply {
            target: target.to_string(),
            after: timeout,
            port_unreachable,
        };
        match socket.send(&message) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(no_reply(true)),
            Err(e) => return Err(io_error(e)),
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(no_reply(false));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(no_reply(true)),
            Err(e) => return Err(io_error(e)),
        };
        print_reply(target, &buf[..n]);
    }
    Ok(())
}
