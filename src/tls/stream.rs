//! A TLS session over a TCP socket, as a `Read + Write` stream, in blocking or non-blocking mode.
//!
//! rustls's own `StreamOwned` suits blocking sockets only: its read loops until a whole record has
//! arrived. Here a non-blocking read returns `WouldBlock` as soon as the socket is empty, so a
//! worker can wait for a connection in the middle of a handshake or between requests on the raw
//! socket. What the socket cannot show is plaintext rustls has already decrypted:
//! [`TlsStream::has_buffered_plaintext`] tells the worker to keep reading instead. In blocking mode
//! the [`Socket`]'s waits yield the worker.
//!
//! ```text
//!  read:  plaintext buffered? ─yes─> return it
//!            │ no
//!         read_tls (one socket read) ─> process_new_packets ─> send what the handshake wants ─> loop
//!  write: plaintext into rustls ─> write_tls until its buffer is empty
//! ```

use std::io::{self, IoSlice, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;

use rustls::Connection;

use super::stats::{Failure, Side, TlsStats};
use crate::net::Socket;

/// A TLS connection and its socket.
pub struct TlsStream {
    conn: Connection,
    sock: Socket,
    side: Side,
    nonblocking: bool,
    /// The handshake's end (or failure) has been counted.
    counted: bool,
    stats: Arc<TlsStats>,
    /// The intercepted client's address and the CONNECT host, to name in a refusal
    /// (`tls::distrust`); server side only.
    client: Option<(IpAddr, String)>,
}

impl TlsStream {
    /// Wraps a server-side connection whose handshake continues on `sock`.
    pub fn server(conn: rustls::ServerConnection, sock: Socket, stats: Arc<TlsStats>) -> TlsStream {
        TlsStream::new(Connection::Server(conn), sock, Side::Client, stats)
    }

    /// Wraps a client-side connection; [`TlsStream::handshake`] completes it.
    pub fn client(conn: rustls::ClientConnection, sock: Socket, stats: Arc<TlsStats>) -> TlsStream {
        TlsStream::new(Connection::Client(conn), sock, Side::Upstream, stats)
    }

    fn new(conn: Connection, sock: Socket, side: Side, stats: Arc<TlsStats>) -> TlsStream {
        TlsStream {
            conn,
            sock,
            side,
            nonblocking: false,
            counted: false,
            stats,
            client: None,
        }
    }

    /// Names the client and the host it asked for, so a refusal of Porter's certificate is
    /// logged and counted for them.
    pub fn for_client(mut self, client: IpAddr, host: String) -> TlsStream {
        self.client = Some((client, host));
        self
    }

    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    pub fn socket_mut(&mut self) -> &mut Socket {
        &mut self.sock
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.sock.set_nonblocking(on)?;
        self.nonblocking = on;
        Ok(())
    }

    /// Whether rustls holds decrypted bytes not read yet (the socket may be empty meanwhile).
    pub fn has_buffered_plaintext(&mut self) -> bool {
        self.conn
            .process_new_packets()
            .is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
    }

    /// Runs a blocking handshake to its end; a failure is classified for the error page and counted.
    pub fn handshake(&mut self) -> Result<(), (Failure, io::Error)> {
        while self.conn.is_handshaking() {
            match self.read_records() {
                Ok(0) => {
                    let error = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    );
                    let failure = self.closed_during_handshake();
                    return Err((failure, error));
                }
                Ok(_) => {}
                Err(error) => {
                    let failure = classify(&error);
                    self.count_once(failure);
                    return Err((failure, error));
                }
            }
        }
        Ok(())
    }

    /// One socket read into rustls, then processing and whatever the peer must be sent in reply.
    /// Returns the bytes read from the socket (0 at end of stream).
    fn read_records(&mut self) -> io::Result<usize> {
        // A flight queued without a read (the server's hello, right after the ClientHello was
        // accepted) goes out before waiting for the peer's answer to it.
        self.flush_tls()?;
        let n = match self.conn.read_tls(&mut self.sock) {
            Ok(n) => n,
            Err(e) if self.conn.is_handshaking() && is_hang_up(&e) => {
                self.closed_during_handshake();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match self.conn.process_new_packets() {
            Ok(_) => {}
            Err(error) => {
                // rustls queued an alert telling the peer why; send it, then fail.
                let _ = self.flush_tls();
                let failure = Failure::of(&error);
                if failure == Failure::ClientDistrustsCa && !self.counted {
                    self.report_distrust(&error.to_string());
                }
                self.count_once(failure);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
        // What the peer waits for goes now: a handshake flight, and a client's last one (its
        // Finished). A server's session ticket, queued as its handshake ends, rides with the
        // response instead (one write and one wake-up of the client less per connection); the
        // next read flushes it first if no write comes before.
        if self.conn.is_handshaking() || self.side == Side::Upstream {
            self.flush_tls()?;
        }
        if !self.counted && !self.conn.is_handshaking() {
            self.count(None);
        }
        Ok(n)
    }

    /// The peer hung up mid-handshake. A client does that right after Porter's certificate flight
    /// when it does not trust it and says so with no alert (Node): that is a refusal. An
    /// origin doing it is an I/O failure.
    fn closed_during_handshake(&mut self) -> Failure {
        let failure = match self.side {
            Side::Client => Failure::ClientDistrustsCa,
            Side::Upstream => Failure::Io,
        };
        if failure == Failure::ClientDistrustsCa && !self.counted {
            self.report_distrust("it closed the connection after Porter's certificate");
        }
        self.count_once(failure);
        failure
    }

    /// Logs and counts a refusal of Porter's certificate for the client and host, when known.
    fn report_distrust(&self, how: &str) {
        if let (Side::Client, Some((client, host))) = (self.side, &self.client) {
            let proxy = self.sock.local_addr().ok();
            self.stats.distrust.refused(*client, host, how, proxy);
        }
    }

    fn count_once(&mut self, failure: Failure) {
        if !self.counted {
            self.count(Some(failure));
        }
    }

    fn count(&mut self, failure: Option<Failure>) {
        self.counted = true;
        match failure {
            None => self.stats.handshake_done(self.side),
            Some(failure) => self.stats.failed(self.side, failure),
        }
    }

    /// Writes what fits without waiting, for a writer with other work meanwhile (`proxy::leader`):
    /// the plaintext rustls takes into its bounded buffer (64 KiB of records by default), then as
    /// much of its TLS as the socket takes now. `WouldBlock` when it took nothing. What stays in
    /// rustls goes with the next write or [`Write::flush`].
    pub fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_nonblocking(true)?;
        let pushed = self.push_tls_now();
        let n = pushed.and_then(|()| self.conn.writer().write(buf));
        let pushed = n.and_then(|n| self.push_tls_now().map(|()| n));
        self.sock.set_nonblocking(self.nonblocking)?;
        match pushed? {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    /// Writes the TLS bytes rustls holds until the (non-blocking) socket is full.
    fn push_tls_now(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes every TLS byte rustls holds. A non-blocking socket that is full is waited for (within
    /// its write timeout): a handshake flight or a response must not be cut short.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.nonblocking => {
                    self.sock.wait_writable()?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether a socket error is the peer going away (reset, abort), not a timeout or a local fault.
fn is_hang_up(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// A failure from an io::Error of this stream: rustls errors ride inside `InvalidData`.
fn classify(error: &io::Error) -> Failure {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .map_or(Failure::Io, Failure::of)
}

impl Drop for TlsStream {
    /// Tells the peer the session ends here (close_notify), so a client can tell a complete response
    /// from a cut one. One non-blocking attempt: a peer that stopped reading must not hold up the
    /// worker closing it.
    fn drop(&mut self) {
        if self.sock.set_nonblocking(true).is_ok() {
            self.conn.send_close_notify();
            let _ = self.conn.write_tls(&mut self.sock);
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.read_records()? == 0 {
                if self.conn.is_handshaking() {
                    self.closed_during_handshake();
                }
                // End of stream: what rustls makes of it (close_notify or a truncation).
                return match self.conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    other => other,
                };
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.flush_tls()?;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.conn.writer().write_vectored(bufs)?;
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use crate::tls::{CertificateAuthority, Minter};

    /// A server TlsStream (non-blocking, as a worker holds it) and a rustls client over loopback.
    fn pair() -> (
        tempfile::TempDir,
        TlsStream,
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(CertificateAuthority::init(dir.path()).unwrap());
        let minter = Minter::new(Arc::clone(&ca), 4, Arc::default());
        let server_config = minter.config_for("localhost").unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client_tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client_tcp
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (server_tcp, _) = listener.accept().unwrap();
        let mut server_tcp = Socket::new(server_tcp, crate::net::Side::Client).unwrap();
        server_tcp
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let conn = rustls::ServerConnection::new(server_config).unwrap();
        let mut server = TlsStream::server(conn, server_tcp, Arc::default());
        server.set_nonblocking(true).unwrap();
        let client =
            rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
                .unwrap();
        (dir, server, rustls::StreamOwned::new(client, client_tcp))
    }

    /// Reads into a buffer of `size` bytes, treating WouldBlock as "not yet" (bounded).
    fn read_small(server: &mut TlsStream, size: usize) -> Vec<u8> {
        let mut buf = vec![0u8; size];
        for _ in 0..2500 {
            match server.read(&mut buf) {
                Ok(n) => return buf[..n].to_vec(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("server read failed: {e}"),
            }
        }
        panic!("nothing to read within 5 s");
    }

    #[test]
    fn a_non_blocking_read_waits_for_the_handshake_and_reports_buffered_plaintext() {
        let (_dir, mut server, mut client) = pair();
        let mut buf = [0u8; 16];
        // Nothing sent yet: not an error, just not yet.
        let first = server.read(&mut buf).unwrap_err();
        assert_eq!(first.kind(), io::ErrorKind::WouldBlock);
        assert!(server.is_handshaking());
        let peer = std::thread::spawn(move || {
            // Two messages in one record.
            client.write_all(b"first-second").unwrap();
            client.flush().unwrap();
            let mut answer = [0u8; 6];
            client.read_exact(&mut answer).unwrap();
            answer
        });
        // A small read takes part of the record; the rest stays decrypted inside rustls, where the
        // socket cannot show it.
        let got = read_small(&mut server, 5);
        assert_eq!(got, b"first");
        assert!(!server.is_handshaking());
        assert!(server.has_buffered_plaintext(), "bytes left inside rustls");
        assert_eq!(read_small(&mut server, 64), b"-second");
        assert!(!server.has_buffered_plaintext());
        server.write_all(b"answer").unwrap();
        assert_eq!(&peer.join().unwrap(), b"answer");
    }
}
