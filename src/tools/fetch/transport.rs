//! Connections for `porter fetch`: straight to the origin, to a proxy, or through a proxy's CONNECT
//! tunnel, with TLS on top for https.
//!
//! ```text
//!  http,  no proxy:  TCP origin ─────────────────────────────> GET /path
//!  http,  proxy:     TCP proxy ──────────────────────────────> GET http://host/path
//!  https, no proxy:  TCP origin ──> TLS ─────────────────────> GET /path
//!  https, proxy:     TCP proxy ──> CONNECT host:443 ──> TLS ─> GET /path
//! ```
//! Every socket gets `--timeout` for connecting and for each read and write.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;

use super::error::{FetchError, Phase};
use super::naming;
use super::proxy::ProxyAddr;
use super::target::{FetchUrl, authority};
use crate::http::Scheme;
use crate::http::{self, Limits, ReadBuf, RequestHead, ResponseHead, Version, body::BodyReader};

/// Read buffer per connection: the head limit plus room for the start of the body.
const BUF_BYTES: usize = 80 * 1024;
/// How much of a proxy's error page we read to explain the error.
const ERROR_PAGE_BYTES: u64 = 16 * 1024;

/// A plain or TLS byte stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(out),
            Stream::Tls(s) => s.read(out),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(data),
            Stream::Tls(s) => s.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// An open connection, ready for a request.
pub struct Connection {
    pub stream: Stream,
    pub buf: ReadBuf,
    /// Who answers the request: the origin's `host:port`, or the proxy's for plain http through one.
    pub peer: String,
    /// Whether the request line must carry the absolute URL (plain http through a proxy).
    pub absolute_form: bool,
}

/// Opens the connection `url` needs; `tls` must be given for https.
pub fn open(
    url: &FetchUrl,
    proxy: Option<&ProxyAddr>,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Connection, FetchError> {
    let origin = url.authority();
    let (tcp, peer) = match proxy {
        Some(proxy) => (
            dial(&proxy.host, proxy.port, true, timeout)?,
            proxy.to_string(),
        ),
        None => (dial(&url.host, url.port, false, timeout)?, origin.clone()),
    };
    let mut buf = ReadBuf::with_capacity(BUF_BYTES);
    if url.scheme == Scheme::Http {
        return Ok(Connection {
            stream: Stream::Plain(tcp),
            buf,
            peer,
            absolute_form: proxy.is_some(),
        });
    }
    let mut tcp = tcp;
    if let Some(proxy) = proxy {
        tunnel(&mut tcp, &mut buf, &origin, proxy, timeout, &url.url)?;
    }
    let Some(config) = tls else {
        return Err(FetchError::Tls {
            peer: origin,
            error: rustls::Error::General("no tls configuration".to_string()),
        });
    };
    let stream = handshake(tcp, url, config, timeout)?;
    Ok(Connection {
        stream,
        buf,
        peer: origin,
        absolute_form: false,
    })
}

/// Resolves and connects, trying each address in turn.
fn dial(host: &str, port: u16, is_proxy: bool, timeout: Duration) -> Result<TcpStream, FetchError> {
    let peer = authority(host, port);
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| FetchError::Dns {
            host: host.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(FetchError::Dns {
            host: host.to_string(),
            reason: "it has no address".to_string(),
        });
    }
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                let setup = stream
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| stream.set_write_timeout(Some(timeout)));
                if let Err(e) = setup {
                    return Err(FetchError::from_io(e, &peer, Phase::Connect, timeout));
                }
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    let error = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound));
    Err(
        match FetchError::from_io(error, &peer, Phase::Connect, timeout) {
            FetchError::Refused { peer, .. } => FetchError::Refused { peer, is_proxy },
            other => other,
        },
    )
}

/// Asks the proxy for a tunnel to `origin` (RFC 9110 §9.3.6) and checks its answer.
fn tunnel(
    tcp: &mut TcpStream,
    buf: &mut ReadBuf,
    origin: &str,
    proxy: &ProxyAddr,
    timeout: Duration,
    url: &str,
) -> Result<(), FetchError> {
    let peer = proxy.to_string();
    let mut head = RequestHead {
        method: http::Method::Connect,
        target: origin.to_string(),
        version: Version::Http11,
        headers: http::Headers::new(),
    };
    head.headers.append("Host", origin);
    head.headers.append("User-Agent", super::USER_AGENT);
    if let Some(credentials) = &proxy.credentials {
        head.headers
            .append("Proxy-Authorization", credentials.header_value());
    }
    let mut bytes = Vec::with_capacity(128);
    http::write::request_head(&mut bytes, &head);
    tcp.write_all(&bytes)
        .map_err(|e| FetchError::from_io(e, &peer, Phase::SendRequest, timeout))?;
    let response = read_head(tcp, buf, &peer, Phase::Tunnel, timeout)?;
    if !(200..300).contains(&response.status) {
        return Err(proxy_error(
            &peer,
            response,
            buf,
            tcp,
            &http::Method::Get,
            url,
        ));
    }
    if !buf.is_empty() {
        return Err(FetchError::BadResponse {
            peer,
            error: http::Error::Malformed("bytes after the tunnel was established"),
        });
    }
    Ok(())
}

/// The TLS handshake, done before the request so its failures are reported as such.
fn handshake(
    tcp: TcpStream,
    url: &FetchUrl,
    config: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Stream, FetchError> {
    let peer = url.authority();
    let name = ServerName::try_from(url.host.clone()).map_err(|_| FetchError::BadUrl {
        url: url.url.clone(),
        reason: "the host is not a valid tls server name".to_string(),
    })?;
    let conn =
        ClientConnection::new(Arc::clone(config), name).map_err(|error| FetchError::Tls {
            peer: peer.clone(),
            error,
        })?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| FetchError::from_io(e, &peer, Phase::TlsHandshake, timeout))?;
    }
    Ok(Stream::Tls(Box::new(tls)))
}

/// Reads a response head, skipping interim 1xx responses (RFC 9110 §15.2).
pub fn read_head(
    stream: &mut impl Read,
    buf: &mut ReadBuf,
    peer: &str,
    phase: Phase,
    timeout: Duration,
) -> Result<ResponseHead, FetchError> {
    let limits = Limits::default();
    loop {
        match http::parse::response(buf.data(), &limits) {
            Ok(Some((head, used))) => {
                buf.consume(used);
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(head);
            }
            Ok(None) => {}
            Err(error) => {
                return Err(FetchError::BadResponse {
                    peer: peer.to_string(),
                    error,
                });
            }
        }
        if buf.is_full() {
            return Err(FetchError::BadResponse {
                peer: peer.to_string(),
                error: http::Error::HeadTooLarge,
            });
        }
        match buf.fill_from(stream) {
            Ok(0) => {
                return Err(FetchError::Closed {
                    peer: peer.to_string(),
                    phase,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FetchError::from_io(e, peer, phase, timeout)),
        }
    }
}

/// A proxy's own error answer as an error, explained by the first paragraph or title of its page.
pub fn proxy_error(
    proxy: &str,
    head: ResponseHead,
    buf: &mut ReadBuf,
    stream: &mut impl Read,
    method: &http::Method,
    url: &str,
) -> FetchError {
    let mut page = Vec::new();
    if let Ok(mode) = http::body::response_mode(method, head.status, &head.headers) {
        let _ = BodyReader::new(mode, buf, stream)
            .take(ERROR_PAGE_BYTES)
            .read_to_end(&mut page);
    }
    let charset = naming::charset(&head.headers);
    let detail = naming::first_paragraph(&page, charset)
        .or_else(|| naming::title(&page, charset))
        .unwrap_or_default();
    FetchError::ProxyStatus {
        proxy: proxy.to_string(),
        status: head.status,
        reason: head.reason.clone(),
        detail,
        head: Box::new(head),
        url: url.to_string(),
    }
}
