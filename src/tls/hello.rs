//! The first bytes a client sends inside a CONNECT tunnel: a TLS ClientHello to terminate, or anything
//! else to relay untouched.
//!
//! ```text
//!  bytes ─ first byte 0x16, then 0x03 (a TLS handshake record)
//!        │    └─ record headers: not a ClientHello? ─yes─────────────> Refused (alert)
//!        │                       more than 64 records? ─yes──────────> TooFragmented (alert)
//!        │                       hello whole? ─no─ over the limit? ─yes─> TooLarge (alert)
//!        │                          │yes            └no───────────────> NeedMore
//!        │                          ▼
//!        │               rustls Acceptor (once) ─┬─ Hello
//!        │                                       └─ broken ─> Refused (alert)
//!        └ anything else ──────────────────────────────────> NotTls
//! ```
//! The bytes stay in the caller's buffer until a decision is made, so nothing is lost for a plain
//! relay. Each read only walks the record headers (RFC 8446 §5.1) and the handshake header that
//! gives the hello's length (§4): rustls parses the hello once, when its last record is in. (Parsing
//! everything from the start on each read cost a hello trickled a byte at a time quadratic time.)
//!
//! A hello may span several records: post-quantum key shares make hellos of 2 KB and more, and
//! padding or many shares go past one record's 16 KiB. Porter takes hellos up to the connection's
//! buffer (the request head limit, 64 KiB) and below rustls's own cap on a handshake message
//! ([`RUSTLS_MAX_HANDSHAKE`]). A larger one is answered with a fatal `handshake_failure` alert
//! written here, not dropped without a word.
//!
//! Records may be as small as one byte (RFC 8446 §5.1 only forbids empty handshake fragments), and
//! each read walks the headers from the first: unbounded, 64 KiB of 1-byte records is about 10,900
//! headers, and a hello trickled a byte per read cost about 3.6e8 steps. Real clients send the
//! hello in one record, or a few once it passes 16 KiB, so a hello spread over more than
//! [`MAX_HELLO_RECORDS`] records is refused with the same `handshake_failure` alert (tools that cut
//! the hello into many records on purpose, to slip past filters, are refused too). No read then
//! walks more than 65 headers. A first handshake message that is no ClientHello is refused at once
//! with `unexpected_message` (§6), instead of waiting for all of it and parsing it each read.

use std::fmt;
use std::io::Write;

use rustls::server::{Accepted, Acceptor};

use super::stats::Failure;

/// rustls's cap on one handshake message's body: `MAX_HANDSHAKE_SIZE` (0xffff) in rustls 0.23
/// `src/msgs/deframer/handshake.rs`, with the 64 KiB buffer it allows while joining one in
/// `src/msgs/deframer/buffers.rs`. Outside a handshake message that buffer stops at one record of
/// 18,437 bytes (`MAX_WIRE_SIZE`), which is why the Acceptor must process each record before the
/// next is read into it.
pub const RUSTLS_MAX_HANDSHAKE: usize = 0xffff;
/// A record header: type, version, length (RFC 8446 §5.1).
const RECORD_HEADER: usize = 5;
/// A handshake message header: type, 24-bit length (RFC 8446 §4).
const HANDSHAKE_HEADER: usize = 4;
/// The largest plaintext fragment a record may carry (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 1 << 14;
const CONTENT_HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
/// The most records a hello may span: real clients use one to a few (see the module doc).
pub const MAX_HELLO_RECORDS: usize = 64;
/// A fatal `unexpected_message` alert record (RFC 8446 §6): a client's first handshake message must
/// be a ClientHello (§4.1.2).
const UNEXPECTED_MESSAGE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 10];
/// A fatal `handshake_failure` alert record (RFC 8446 §6): no other alert says "your hello is more
/// than this server takes" better, and clients show it as a failed handshake, not a corrupt record.
const HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40];

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
    /// A hello larger than Porter takes; send [`HelloTooLarge::alert`] and close.
    TooLarge(HelloTooLarge),
    /// A hello spread over more records than Porter takes; send
    /// [`HelloTooFragmented::alert`] and close.
    TooFragmented(HelloTooFragmented),
}

/// A ClientHello over more than [`MAX_HELLO_RECORDS`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloTooFragmented {
    /// The most records Porter takes; the hello was not whole after them.
    pub records: usize,
}

impl HelloTooFragmented {
    /// The alert record to send before closing.
    pub fn alert(&self) -> &'static [u8] {
        &HANDSHAKE_FAILURE_ALERT
    }
}

impl fmt::Display for HelloTooFragmented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a TLS ClientHello spread over more than {} records is more than Porter takes \
             (clients use one to a few); answered with a handshake_failure alert",
            self.records
        )
    }
}

/// A ClientHello over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloTooLarge {
    /// The hello's size (handshake header included) as it declares it, or the bytes buffered when
    /// its records were too small to fit however large it is.
    pub size: usize,
    /// The most Porter takes, as a handshake message.
    pub limit: usize,
}

impl HelloTooLarge {
    /// The alert record to send before closing.
    pub fn alert(&self) -> &'static [u8] {
        &HANDSHAKE_FAILURE_ALERT
    }
}

impl fmt::Display for HelloTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a TLS ClientHello of {} bytes is more than the {} Porter takes; \
             answered with a handshake_failure alert",
            self.size, self.limit
        )
    }
}

/// Looks at the bytes received so far; `limit` is the most the caller's buffer holds.
pub fn classify(bytes: &[u8], limit: usize) -> FirstBytes {
    match bytes {
        [] | [CONTENT_HANDSHAKE] => FirstBytes::NeedMore,
        [CONTENT_HANDSHAKE, 0x03, ..] => match extent(bytes, limit) {
            // Records too small to hold the hello in the buffer, however large it is.
            Extent::NeedMore(size) if bytes.len() >= limit => FirstBytes::TooLarge(HelloTooLarge {
                size: size.unwrap_or(bytes.len()),
                limit: max_hello(limit),
            }),
            Extent::NeedMore(_) => FirstBytes::NeedMore,
            Extent::TooLarge(size) => FirstBytes::TooLarge(HelloTooLarge {
                size,
                limit: max_hello(limit),
            }),
            Extent::TooFragmented(records) => {
                FirstBytes::TooFragmented(HelloTooFragmented { records })
            }
            Extent::NotHello => FirstBytes::Refused {
                failure: Failure::Protocol,
                alert: UNEXPECTED_MESSAGE_ALERT.to_vec(),
            },
            // rustls decides, and says why in an alert if it refuses.
            Extent::Complete | Extent::Unusual => accept(bytes),
        },
        _ => FirstBytes::NotTls,
    }
}

/// The largest hello (handshake header included) that fits: rustls's cap, and a buffer of `limit`
/// bytes holding it in full records.
fn max_hello(limit: usize) -> usize {
    let mut fits = limit.saturating_sub(RECORD_HEADER * limit.div_ceil(MAX_FRAGMENT));
    while fits > 0 && wire_size(fits) > limit {
        fits -= 1;
    }
    fits.min(HANDSHAKE_HEADER + RUSTLS_MAX_HANDSHAKE)
}

/// The fewest bytes a handshake message of `size` bytes takes on the wire: in full records.
fn wire_size(size: usize) -> usize {
    size + RECORD_HEADER * size.div_ceil(MAX_FRAGMENT)
}

/// How far the hello in `bytes` has arrived, from the record and handshake headers alone.
#[derive(Debug, PartialEq, Eq)]
enum Extent {
    /// Its last record is not in yet; the hello's size once its header is in.
    NeedMore(Option<usize>),
    /// Every record of the hello is in.
    Complete,
    /// It declares more than Porter takes.
    TooLarge(usize),
    /// More than this many records came, and the hello was not whole in them.
    TooFragmented(usize),
    /// The first handshake message is another than a ClientHello.
    NotHello,
    /// Not the records of a hello (another record type, an empty or oversized record): for rustls
    /// to refuse with the right alert.
    Unusual,
}

fn extent(bytes: &[u8], limit: usize) -> Extent {
    let mut at = 0;
    // The handshake bytes of complete records so far, and the first four of them.
    let mut carried = 0;
    let mut header = [0u8; HANDSHAKE_HEADER];
    let mut seen = 0;
    let mut wanted = None;
    let mut records = 0;
    while let Some(record) = bytes.get(at..at + RECORD_HEADER) {
        #[cfg(test)]
        HEADER_STEPS.with(|steps| steps.set(steps.get() + 1));
        records += 1;
        if records > MAX_HELLO_RECORDS {
            return Extent::TooFragmented(MAX_HELLO_RECORDS);
        }
        let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        if record[0] != CONTENT_HANDSHAKE || record[1] != 0x03 || len == 0 || len > MAX_FRAGMENT {
            return Extent::Unusual;
        }
        let body = &bytes[at + RECORD_HEADER..];
        let available = body.len().min(len);
        let take = (HANDSHAKE_HEADER - seen).min(available);
        header[seen..seen + take].copy_from_slice(&body[..take]);
        seen += take;
        if wanted.is_none() && seen == HANDSHAKE_HEADER {
            if header[0] != CLIENT_HELLO {
                return Extent::NotHello;
            }
            let size = HANDSHAKE_HEADER
                + (usize::from(header[1]) << 16
                    | usize::from(header[2]) << 8
                    | usize::from(header[3]));
            if size > max_hello(limit) {
                return Extent::TooLarge(size);
            }
            wanted = Some(size);
        }
        if available < len {
            return Extent::NeedMore(wanted);
        }
        carried += len;
        at += RECORD_HEADER + len;
        if wanted.is_some_and(|size| carried >= size) {
            return Extent::Complete;
        }
    }
    Extent::NeedMore(wanted)
}

#[cfg(test)]
thread_local! {
    /// How many times rustls parsed a hello on this thread.
    static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// How many record headers `extent` walked on this thread.
    static HEADER_STEPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Hands the bytes to rustls, a read at a time with the records processed after each: the Acceptor
/// raises its buffer past one record only once it is joining a handshake message.
fn accept(bytes: &[u8]) -> FirstBytes {
    #[cfg(test)]
    PARSES.with(|parses| parses.set(parses.get() + 1));
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    loop {
        // Each pass reads some bytes or ends: rustls taking none of those left is a broken hello.
        let read = acceptor.read_tls(&mut rest);
        if matches!(read, Err(_) | Ok(0)) && !rest.is_empty() {
            return FirstBytes::Refused {
                failure: Failure::Protocol,
                alert: Vec::new(),
            };
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return FirstBytes::Hello(Box::new(accepted)),
            Ok(None) if rest.is_empty() => return FirstBytes::NeedMore,
            Ok(None) => {}
            Err((error, mut pending)) => {
                let mut alert = Vec::new();
                let _ = pending.write_all(&mut alert as &mut dyn Write);
                return FirstBytes::Refused {
                    failure: Failure::of(&error),
                    alert,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const LIMIT: usize = 64 * 1024;

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

    /// A real client's hello for `name` with a padding extension (RFC 7685) of `padding` bytes put
    /// first among its extensions, cut into records of at most `fragment` bytes.
    fn padded_hello(name: &str, padding: usize, fragment: usize) -> Vec<u8> {
        let record = client_hello(name);
        let mut message = record[RECORD_HEADER..].to_vec();
        let be16 = |m: &[u8], at: usize| usize::from(u16::from_be_bytes([m[at], m[at + 1]]));
        // Version (2), random (32), then session id, cipher suites, compression behind their lengths.
        let mut at = HANDSHAKE_HEADER + 2 + 32;
        at += 1 + usize::from(message[at]);
        at += 2 + be16(&message, at);
        at += 1 + usize::from(message[at]);
        let extensions = at;
        let mut extension = vec![0x00, 0x15];
        extension.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
        extension.resize(4 + padding, 0);
        message.splice(extensions + 2..extensions + 2, extension);
        let grown = be16(&message, extensions) + 4 + padding;
        message[extensions..extensions + 2]
            .copy_from_slice(&u16::try_from(grown).unwrap().to_be_bytes());
        let body = u32::try_from(message.len() - HANDSHAKE_HEADER).unwrap();
        message[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
        records(&message, fragment)
    }

    fn records(message: &[u8], fragment: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in message.chunks(fragment) {
            out.extend_from_slice(&[CONTENT_HANDSHAKE, 0x03, 0x01]);
            out.extend_from_slice(&u16::try_from(piece.len()).unwrap().to_be_bytes());
            out.extend_from_slice(piece);
        }
        out
    }

    fn name_of(first: FirstBytes) -> Option<String> {
        match first {
            FirstBytes::Hello(accepted) => {
                accepted.client_hello().server_name().map(str::to_string)
            }
            _ => None,
        }
    }

    fn parses() -> usize {
        PARSES.with(std::cell::Cell::get)
    }

    #[test]
    fn every_prefix_of_a_hello_asks_for_more_and_the_whole_gives_the_name() {
        let hello = client_hello("example.test");
        for end in 0..hello.len() {
            assert!(
                matches!(classify(&hello[..end], LIMIT), FirstBytes::NeedMore),
                "prefix of {end} bytes"
            );
        }
        assert_eq!(
            name_of(classify(&hello, LIMIT)).as_deref(),
            Some("example.test")
        );
    }

    /// The bug: each read parsed the hello from its start, so an 18 KB hello trickled a byte at a
    /// time cost 18,000 parses of up to 18 KB. Now every prefix is judged from the headers and
    /// rustls parses once, when the last record is in.
    #[test]
    fn regression_a_large_hello_a_byte_at_a_time_is_parsed_once() {
        let hello = padded_hello("big.test", 18 * 1024, MAX_FRAGMENT);
        assert!(
            hello.len() > 18 * 1024 + 2 * RECORD_HEADER,
            "{}",
            hello.len()
        );
        let before = parses();
        for end in 0..hello.len() {
            assert!(
                matches!(classify(&hello[..end], LIMIT), FirstBytes::NeedMore),
                "prefix of {end} bytes"
            );
        }
        assert_eq!(parses(), before, "no parse before the hello is whole");
        assert_eq!(
            name_of(classify(&hello, LIMIT)).as_deref(),
            Some("big.test")
        );
        assert_eq!(parses(), before + 1);
    }

    /// The bug: every byte went into rustls before it processed any, and its buffer stops at one
    /// record (18,437 bytes) unless it is joining a handshake message, so a larger hello over
    /// several records was refused with no alert.
    #[test]
    fn regression_hellos_over_several_records_are_taken_up_to_the_limit() {
        for (padding, fragment) in [
            (30 * 1024, MAX_FRAGMENT),
            (30 * 1024, 1000),
            (60 * 1024, MAX_FRAGMENT),
        ] {
            let hello = padded_hello("big.test", padding, fragment);
            assert!(hello.len() <= LIMIT, "{}", hello.len());
            assert_eq!(
                name_of(classify(&hello, LIMIT)).as_deref(),
                Some("big.test"),
                "{padding} bytes of padding in records of {fragment}"
            );
        }
        // The largest that fits in the buffer in full records is within rustls's cap.
        assert_eq!(max_hello(LIMIT), LIMIT - 4 * RECORD_HEADER);
        assert!(max_hello(LIMIT) <= HANDSHAKE_HEADER + RUSTLS_MAX_HANDSHAKE);
        assert!(wire_size(max_hello(LIMIT)) <= LIMIT);
        assert!(wire_size(max_hello(LIMIT) + 1) > LIMIT);
    }

    #[test]
    fn a_hello_over_the_limit_gets_an_alert_as_soon_as_its_length_is_in() {
        // Only the headers matter: a ClientHello declaring 70,000 bytes.
        let size = HANDSHAKE_HEADER + 70_000;
        let mut message = vec![CLIENT_HELLO, 0x01, 0x11, 0x70];
        message.resize(size, 0);
        let hello = records(&message, MAX_FRAGMENT);
        // The record header and the handshake header are enough to tell.
        for end in 0..hello.len().min(LIMIT) {
            let first = classify(&hello[..end], LIMIT);
            if end < RECORD_HEADER + HANDSHAKE_HEADER {
                assert!(matches!(first, FirstBytes::NeedMore), "{end}");
                continue;
            }
            let FirstBytes::TooLarge(too_large) = first else {
                panic!("prefix of {end} bytes not refused");
            };
            assert_eq!(too_large.size, size);
            assert_eq!(too_large.limit, max_hello(LIMIT));
            assert_eq!(too_large.alert(), [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]);
            assert!(too_large.to_string().contains("handshake_failure"));
        }
        // Small records fill the buffer before a hello that would fit otherwise is whole: a
        // message of 65,400 bytes fits in 4 full records, not in 60 of 1,100.
        let message = 65_400;
        let padding = message - (client_hello("big.test").len() - RECORD_HEADER) - 4;
        let small = padded_hello("big.test", padding, 1100);
        assert!(small.len() > LIMIT);
        let full = &small[..LIMIT];
        let FirstBytes::TooLarge(too_large) = classify(full, LIMIT) else {
            panic!("a full buffer must end the wait");
        };
        assert_eq!(too_large.size, message);
        assert!(too_large.size < too_large.limit);
        assert!(matches!(
            classify(&full[..LIMIT - 1], LIMIT),
            FirstBytes::NeedMore
        ));
    }

    fn header_steps() -> usize {
        HEADER_STEPS.with(std::cell::Cell::get)
    }

    /// The bug: each read walked every record header from the start, so a 60 KB hello in 1-byte
    /// records (legal, RFC 8446 §5.1) trickled a byte per read cost about 3.6e8 header steps.
    /// Now a hello over more than 64 records is refused once the 65th record's header is in, and
    /// no read walks more than 65 headers.
    #[test]
    fn regression_a_hello_in_one_byte_records_fed_a_byte_at_a_time_is_refused_in_bounded_work() {
        let hello = padded_hello("tiny.test", 60 * 1024, 1);
        assert!(hello.len() > 6 * 60 * 1024, "{}", hello.len());
        let before = header_steps();
        let parses_before = parses();
        let mut refused_at = None;
        for end in 0..=hello.len() {
            match classify(&hello[..end], LIMIT) {
                FirstBytes::NeedMore => {}
                FirstBytes::TooFragmented(too_many) => {
                    assert_eq!(too_many.records, MAX_HELLO_RECORDS);
                    assert_eq!(too_many.alert(), [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]);
                    assert!(too_many.to_string().contains("handshake_failure"));
                    refused_at = Some(end);
                    break;
                }
                _ => panic!("prefix of {end} bytes neither waited for nor refused"),
            }
        }
        // 64 records of 6 bytes, then the 65th record's header.
        let bytes = refused_at.expect("refused");
        assert_eq!(
            bytes,
            MAX_HELLO_RECORDS * (RECORD_HEADER + 1) + RECORD_HEADER
        );
        let steps = header_steps() - before;
        assert!(
            steps <= (MAX_HELLO_RECORDS + 1) * bytes,
            "{steps} header steps for {bytes} bytes"
        );
        assert_eq!(parses(), parses_before, "rustls never parsed it");
        // A hello in exactly 64 records is taken.
        let message = client_hello("few.test").len() - RECORD_HEADER;
        let in_64 = padded_hello("few.test", 64 * 50 - message - 4, 50);
        assert_eq!(in_64.len(), 64 * (RECORD_HEADER + 50));
        assert_eq!(
            name_of(classify(&in_64, LIMIT)).as_deref(),
            Some("few.test")
        );
    }

    /// The bug: a handshake record whose first message was no ClientHello went to a fresh rustls
    /// Acceptor on each read, which waited for all of the message and parsed it again each time.
    #[test]
    fn regression_a_first_handshake_message_that_is_no_client_hello_is_refused_at_once() {
        // A ServerHello (type 2) declaring 60,000 bytes.
        let mut message = vec![0x02, 0x00, 0xea, 0x60];
        message.resize(HANDSHAKE_HEADER + 60_000, 0);
        let bytes = records(&message, MAX_FRAGMENT);
        let before = parses();
        for end in [RECORD_HEADER + HANDSHAKE_HEADER, 1000, bytes.len()] {
            let FirstBytes::Refused { failure, alert } = classify(&bytes[..end], LIMIT) else {
                panic!("prefix of {end} bytes not refused");
            };
            assert_eq!(failure, Failure::Protocol);
            assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 10]);
        }
        assert_eq!(parses(), before, "decided from the headers, without rustls");
    }

    #[test]
    fn other_protocols_are_not_tls_and_broken_hellos_are_refused() {
        for bytes in [&b"GET / HTTP/1.1\r\n"[..], b"SSH-2.0-x\r\n", b"\x16\x01"] {
            assert!(
                matches!(classify(bytes, LIMIT), FirstBytes::NotTls),
                "{bytes:?}"
            );
        }
        // A handshake record whose body is no ClientHello, an empty record, a record of another
        // type in the middle of a hello.
        let hello = padded_hello("x.test", 100, 64);
        let mut interrupted = hello[..69].to_vec();
        interrupted.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
        for broken in [
            &[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00][..],
            &[
                0x16, 0x03, 0x01, 0x00, 0x00, 0x16, 0x03, 0x01, 0x00, 0x04, 0x01,
            ],
            &interrupted,
        ] {
            assert!(
                matches!(classify(broken, LIMIT), FirstBytes::Refused { .. }),
                "{broken:?}"
            );
        }
    }
}
