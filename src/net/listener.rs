//! The listening socket's options, set once so that every accepted connection inherits them or is
//! spared work.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

/// Seconds the kernel holds a connection that has sent no bytes before handing it to `accept`
/// anyway (rounded by the kernel to its SYN-ACK retransmissions: about 1 to 3 s).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Binds `addr` as a non-blocking listener with `TCP_NODELAY` (Linux copies it to each accepted
/// socket: one `setsockopt` less per connection) and `TCP_DEFER_ACCEPT`.
///
/// Every protocol Porter serves has the client speak first (an HTTP request, a TLS ClientHello, a
/// PROXY header), so a connection is worth waking the acceptor for only once its first bytes are
/// in: the worker's first read then finds them, instead of finding nothing, registering the socket
/// and sleeping until they come (half the connections of a `curl` per request, and a wake-up and
/// two system calls each). A client that stays silent is accepted after the defer period and
/// meets the head timeout as before. nginx's `listen ... deferred` is the same option.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    rustix::net::sockopt::set_tcp_nodelay(&listener, true)?;
    if cfg!(target_os = "linux") {
        // Only a speed-up: a kernel without it serves the same, one wake-up dearer.
        if let Err(e) = set_defer_accept(&listener, DEFER_ACCEPT_SECS) {
            log::debug!("TCP_DEFER_ACCEPT not set on {addr}: {e}");
        }
    }
    Ok(listener)
}

/// `setsockopt(TCP_DEFER_ACCEPT)`, which rustix does not wrap.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_defer_accept(listener: &TcpListener, secs: libc::c_int) -> io::Result<()> {
    // SAFETY: the descriptor is the listener's, open for the call's length (borrowed); the value
    // pointer and length describe a live `c_int`, which is what the kernel reads for this option.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_defer_accept(_listener: &TcpListener, _secs: libc::c_int) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option must reach the socket: without it every new connection costs the worker an
    /// empty read, a registration and a second wake-up.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_listener_defers_accept_until_bytes_arrive() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let value = rustix::net::sockopt::tcp_nodelay(&listener).unwrap();
        assert!(value);
        assert!(defer_accept_secs(&listener) > 0);
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn defer_accept_secs(listener: &TcpListener) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as in `set_defer_accept`; the kernel writes at most `len` bytes into `value`.
        let result = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(result, 0, "{}", io::Error::last_os_error());
        value
    }
}
