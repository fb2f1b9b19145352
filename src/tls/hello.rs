//! The first bytes a client sends inside a CONNECT tunnel: a TLS ClientHello to terminate, or anything
//! else to relay untouched.
//!
//! ```text
//!  bytes ─ first byte 0x16, then 0x03 (a TLS handshake record) ─> rustls Acceptor ─┬─ whole hello ─> Hello
//!        │                                                                         ├─ partial ─────> NeedMore
//!        │                                                                         └─ garbage ─────> Refused
//!        └ anything else ───────────────────────────────────────────────────────────> NotTls
//! ```
//! The bytes stay in the caller's buffer until a decision is made, so a hello split over several
//! reads is parsed again from the start with each read (it is small), and nothing is lost for a
//! plain relay.

use std::io::Write;

use rustls::server::{Accepted, Acceptor};

use super::stats::Failure;

/// What the first bytes are.
pub enum FirstBytes {
    /// Too few bytes to tell yet.
    NeedMore,
    /// Not TLS: relay as a plain tunnel.
    NotTls,
    /// A complete ClientHello; `accepted` continues the handshake.
    Hello(Box<Accepted>),
    /// It started like TLS but the hello is broken. `alert` is what to send the client.
    Refused { failure: Failure, alert: Vec<u8> },
}

/// Looks at the bytes received so far.
pub fn classify(bytes: &[u8]) -> FirstBytes {
    match bytes {
        [] | [0x16] => FirstBytes::NeedMore,
        [0x16, 0x03, ..] => accept(bytes),
        _ => FirstBytes::NotTls,
    }
}

fn accept(bytes: &[u8]) -> FirstBytes {
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => {
                return FirstBytes::Refused {
                    failure: Failure::Protocol,
                    alert: Vec::new(),
                };
            }
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => FirstBytes::Hello(Box::new(accepted)),
        Ok(None) => FirstBytes::NeedMore,
        Err((error, mut pending)) => {
            let mut alert = Vec::new();
            let _ = pending.write_all(&mut alert as &mut dyn Write);
            FirstBytes::Refused {
                failure: Failure::of(&error),
                alert,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client asking for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name.to_string().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn every_prefix_of_a_hello_asks_for_more_and_the_whole_gives_the_name() {
        let hello = client_hello("example.test");
        for end in 0..hello.len() {
            assert!(
                matches!(classify(&hello[..end]), FirstBytes::NeedMore),
                "prefix of {end} bytes"
            );
        }
        match classify(&hello) {
            FirstBytes::Hello(accepted) => {
                assert_eq!(accepted.client_hello().server_name(), Some("example.test"));
            }
            _ => panic!("the whole hello was not accepted"),
        }
    }

    #[test]
    fn other_protocols_are_not_tls_and_broken_hellos_are_refused() {
        for bytes in [&b"GET / HTTP/1.1\r\n"[..], b"SSH-2.0-x\r\n", b"\x16\x01"] {
            assert!(matches!(classify(bytes), FirstBytes::NotTls), "{bytes:?}");
        }
        // A handshake record whose body is no ClientHello.
        let broken = [0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00];
        assert!(matches!(classify(&broken), FirstBytes::Refused { .. }));
    }
}
