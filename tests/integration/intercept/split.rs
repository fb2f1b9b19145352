//! Intercepted TLS whose bytes arrive in tiny pieces: a relay between the peers forwards what it
//! reads 1 to 7 bytes at a time, with a short pause after each piece, so every TLS record (the
//! ClientHello, the handshake's last flight, each request record, the origin's certificate and
//! responses) reaches the proxy over several socket reads, and a worker often finds half a record
//! and nothing more. Each read must then mean "not yet": never end of stream, never an empty
//! request, never an idle connection left waiting on its socket with plaintext it already decrypted.
//! The opposite split too: a ClientHello larger than the connection's read buffer in one burst,
//! which the proxy must take in over several reads without waiting for an edge that never comes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustls::ClientConnection;
use rustls::pki_types::ServerName;

use super::*;

/// A relay's deadline for each read: far longer than any test here, so only a hang ends it.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which way a relay cuts the bytes into pieces (the other way is forwarded as read).
#[derive(Clone, Copy, PartialEq)]
enum Slow {
    /// From whoever connects to the relay to the address it relays to.
    Forward,
    /// Both ways.
    Both,
}

/// A TCP relay on 127.0.0.1:0 to `to`; counts the pieces it cut.
struct Relay {
    addr: SocketAddr,
    pieces: Arc<AtomicUsize>,
}

impl Relay {
    fn start(to: SocketAddr, slow: Slow) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let pieces = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pieces);
        thread::spawn(move || {
            for (n, near) in listener.incoming().flatten().enumerate() {
                let Ok(far) = TcpStream::connect(to) else {
                    continue;
                };
                for s in [&near, &far] {
                    s.set_read_timeout(Some(RELAY_TIMEOUT)).ok();
                    s.set_write_timeout(Some(RELAY_TIMEOUT)).ok();
                    // Every piece its own segment: nothing coalesces them again on the way.
                    s.set_nodelay(true).ok();
                }
                let (near2, far2) = (near.try_clone().unwrap(), far.try_clone().unwrap());
                let forward = Arc::clone(&counter);
                let seed = n as u32 * 2 + 1;
                thread::spawn(move || copy(near, far, Some(forward), seed));
                let back = (slow == Slow::Both).then(|| Arc::clone(&counter));
                thread::spawn(move || copy(far2, near2, back, seed + 1));
            }
        });
        Relay { addr, pieces }
    }

    fn pieces(&self) -> usize {
        self.pieces.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until end of stream, in pieces of 1 to 7 bytes when `pieces` counts them.
fn copy(mut from: TcpStream, mut to: TcpStream, pieces: Option<Arc<AtomicUsize>>, seed: u32) {
    let mut rng = seed;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(counter) = &pieces else {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            continue;
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let size = (1 + (rng >> 16) % 7) as usize;
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            if to.write_all(piece).is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            rest = tail;
            thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Writes `parts` as separate TLS records, each flushed (so each its own segment, then cut smaller).
fn write_records(stream: &mut Tunnelled, parts: &[&str]) {
    for part in parts {
        stream.write_all(part.as_bytes()).unwrap();
        stream.flush().unwrap();
    }
}

#[test]
fn tls_records_from_the_client_that_arrive_in_tiny_pieces_are_all_answered() {
    let setup = Setup::new();
    // One worker: a task that blocks it, or waits on its socket with decrypted bytes still inside
    // rustls, stalls the test.
    let proxy = setup.proxy(&["--workers", "1"]);
    let relay = Relay::start(proxy.addr, Slow::Forward);
    let target = format!("localhost:{}", setup.port());
    // The CONNECT head, the ClientHello and the client's Finished all come through in pieces.
    let mut stream = tls_through(relay.addr, &target, "localhost", &setup.porter_ca());
    let after_handshake = relay.pieces();
    assert!(
        after_handshake > 50,
        "the relay cut only {after_handshake} pieces"
    );

    // One request over several records.
    let host = format!("Host: {target}\r\n");
    write_records(
        &mut stream,
        &["GE", "T /split HTTP/1.1\r\n", &host, "\r", "\n"],
    );
    let response = read_tls_response(&mut stream);
    assert_eq!(response.text(), "GET /split from the TLS origin");
    assert_eq!(response.header("x-cache"), Some("MISS"));

    // Three requests in one record, then two more whose boundary falls inside a record.
    let request = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let three = format!("{}{}{}", request("/a"), request("/b"), request("/split"));
    write_records(&mut stream, &[&three]);
    let (d, e) = (request("/d"), request("/e"));
    let (d_head, d_tail) = d.split_at(10);
    write_records(&mut stream, &[d_head, &format!("{d_tail}{e}")]);
    for (path, cache) in [
        ("/a", "MISS"),
        ("/b", "MISS"),
        ("/split", "HIT"),
        ("/d", "MISS"),
        ("/e", "MISS"),
    ] {
        let response = read_tls_response(&mut stream);
        assert_eq!(response.text(), format!("GET {path} from the TLS origin"));
        assert_eq!(response.header("x-cache"), Some(cache), "{path}");
    }

    // The connection went idle between those (in `client_idle`); it still answers, and a second
    // tunnel through the same relay is served meanwhile by the only worker.
    let mut other = tls_through(relay.addr, &target, "localhost", &setup.porter_ca());
    assert_eq!(get_inside(&mut other, &target, "/b", false).status, 200);
    let last = get_inside(&mut stream, &target, "/a", false);
    assert_eq!(last.header("x-cache"), Some("HIT"));
    assert_eq!(
        setup.origin.hits(),
        5,
        "/split, /a, /b, /d and /e went once"
    );
    assert!(relay.pieces() > after_handshake + 100);
}

#[test]
fn tls_records_from_a_slow_origin_that_arrive_in_tiny_pieces_are_relayed_whole() {
    let body: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let served = body.clone();
    let origin = crate::tls::TlsOrigin::start_with(move |_, path, _| {
        let mut page = format!("{path}:").into_bytes();
        page.extend_from_slice(&served);
        (
            200,
            hdrs(&[
                ("Content-Type", "text/plain"),
                ("Cache-Control", "max-age=600"),
            ]),
            page,
        )
    });
    let setup = Setup::with_origin(origin);
    // The proxy reaches the origin only through the relay, which cuts both ways: the origin's
    // hello, certificate and Finished, the proxy's requests, and every response record.
    let relay = Relay::start(setup.origin.addr, Slow::Both);
    let port = relay.addr.port().to_string();
    let proxy = setup.proxy(&["--workers", "1", "--connect-port", &port]);
    let target = format!("localhost:{port}");
    let mut stream = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
    for (path, cache) in [("/one", "MISS"), ("/two", "MISS"), ("/one", "HIT")] {
        let response = get_inside(&mut stream, &target, path, false);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(response.header("x-cache"), Some(cache), "{path}");
        let mut expected = format!("{path}:").into_bytes();
        expected.extend_from_slice(&body);
        assert!(response.body == expected, "{path}: the body differs");
    }
    assert_eq!(setup.origin.hits(), 2);
    // Both misses went over one TLS connection to the origin, reused from the pool.
    assert_eq!(
        metric(proxy.addr, "porter_tls_handshakes_total{side=\"upstream\"}"),
        Some(1)
    );
    assert!(relay.pieces() > 1000, "the relay cut {}", relay.pieces());
}

/// The ClientHello a rustls client for `name` writes first, as one TLS record, with a padding
/// extension (type 0x0015, RFC 7685) of `padding` zero bytes put first in its extensions block and
/// the record, handshake and extensions lengths fixed to match.
fn padded_client_hello(name: &str, ca_pem: &str, padding: usize) -> Vec<u8> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut client = ClientConnection::new(trusting(ca_pem), name).expect("client");
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).expect("the ClientHello");
    }
    let be16 = |at: usize| usize::from(u16::from_be_bytes([hello[at], hello[at + 1]]));
    assert_eq!(&hello[..2], [0x16, 0x03], "a handshake record");
    assert_eq!(be16(3) + 5, hello.len(), "one record, nothing after it");
    assert_eq!(hello[5], 0x01, "a ClientHello");
    // After the record header (5) and the handshake header (4): version (2), random (32), then
    // the session id, cipher suites and compression methods, each behind its length.
    let mut at = 9 + 2 + 32;
    at += 1 + usize::from(hello[at]);
    at += 2 + be16(at);
    at += 1 + usize::from(hello[at]);
    let extensions_len = at;
    assert_eq!(extensions_len + 2 + be16(extensions_len), hello.len());

    let added = 4 + padding;
    let mut extension = vec![0x00, 0x15];
    extension.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
    extension.resize(added, 0);
    hello.splice(extensions_len + 2..extensions_len + 2, extension);
    let grow16 = |hello: &mut Vec<u8>, at: usize| {
        let len = u16::from_be_bytes([hello[at], hello[at + 1]]) as usize + added;
        hello[at..at + 2].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    };
    grow16(&mut hello, extensions_len);
    grow16(&mut hello, 3);
    let handshake_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize + added;
    hello[6..9].copy_from_slice(&u32::try_from(handshake_len).unwrap().to_be_bytes()[1..]);
    hello
}

/// The bug: the proxy's first read of a tunnel filled its 4 KiB buffer with part of the hello, the
/// hello was not whole, and the proxy waited for the socket to become readable although the rest
/// was already in the kernel. Edge-triggered, no new edge came, and the client heard nothing until
/// the head deadline.
#[test]
fn regression_a_client_hello_larger_than_the_read_buffer_is_answered() {
    let setup = Setup::new();
    // A hang shows as a client read timing out long before the proxy's own deadline ends it.
    let proxy = setup.proxy(&["--workers", "1", "--head-timeout", "20s"]);
    let hello = padded_client_hello("localhost", &setup.porter_ca(), 8 * 1024);
    assert!(
        (8 * 1024..16 * 1024).contains(&hello.len()),
        "the hello is {} bytes",
        hello.len()
    );

    let target = format!("localhost:{}", setup.port());
    let (mut stream, head) = open_tunnel(proxy.addr, &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The proxy's first read for the tunnel finds nothing and parks the connection with its
    // worker: the socket is registered before the burst, as in the bug.
    thread::sleep(Duration::from_millis(100));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&hello).expect("the hello in one write");

    let sent = Instant::now();
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        // A ServerHello (0x16), or an alert (0x15) if the padded hello is refused later: either
        // way the proxy read the hello whole.
        Ok(1) => assert!(
            matches!(first[0], 0x15 | 0x16),
            "not a TLS record: {:#04x}",
            first[0]
        ),
        other => panic!(
            "no answer to a {}-byte ClientHello after {:?}: {other:?}",
            hello.len(),
            sent.elapsed()
        ),
    }
}

/// A handshake message cut again into records of at most `fragment` bytes (RFC 8446 §5.1).
fn in_records(record: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in record[5..].chunks(fragment) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&u16::try_from(piece.len()).unwrap().to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// Sends `hello` in a new tunnel, `piece` bytes per write, and returns the first bytes answered
/// (at most `want`; fewer at end of stream).
fn answer_to_hello(
    proxy: SocketAddr,
    target: &str,
    hello: &[u8],
    piece: usize,
    want: usize,
) -> Vec<u8> {
    let (mut stream, head) = open_tunnel(proxy, target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.set_nodelay(true).unwrap();
    for (n, part) in hello.chunks(piece).enumerate() {
        stream.write_all(part).expect("the hello");
        // A pause now and then, so the proxy reads the hello over many reads.
        if piece < 64 && n % 64 == 63 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    while answer.len() < want {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answer to a {}-byte hello: {e}", hello.len()),
        }
    }
    answer.truncate(want);
    answer
}

/// The bug: a ClientHello over several records larger than about 18.4 KB was dropped without a
/// word: every byte went into rustls before it processed any, and its buffer holds one record
/// (18,437 bytes) unless it is joining a handshake message. Hellos up to the head limit are now
/// answered, over several records, trickled in small pieces too.
#[test]
fn regression_a_client_hello_over_several_records_up_to_the_head_limit_is_answered() {
    let setup = Setup::new();
    let proxy = setup.proxy(&["--workers", "1"]);
    let target = format!("localhost:{}", setup.port());
    for (padding, piece) in [
        (20 * 1024, 7),
        (30 * 1024, 64 * 1024),
        (60 * 1024, 64 * 1024),
    ] {
        let hello = in_records(
            &padded_client_hello("localhost", &setup.porter_ca(), padding),
            16 * 1024,
        );
        assert!(hello.len() > padding && hello.len() < 64 * 1024);
        let answer = answer_to_hello(proxy.addr, &target, &hello, piece, 3);
        assert_eq!(
            answer,
            [0x16, 0x03, 0x03],
            "a ServerHello for a {}-byte hello in pieces of {piece}",
            hello.len()
        );
    }
    assert_eq!(
        metric(
            proxy.addr,
            "porter_tls_handshake_failures_total{side=\"client\",reason=\"protocol\"}"
        ),
        Some(0)
    );
}

/// What a refused hello gets: the fatal alert `alert` (then the end, `what` saying which), the log
/// line `log` when one is expected, and one count of `reason` in /metrics.
fn assert_refused(
    proxy: &Porter,
    answer: &[u8],
    alert: u8,
    what: &str,
    log: Option<&str>,
    reason: &str,
) {
    assert_eq!(
        answer,
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, alert],
        "{what}"
    );
    if let Some(log) = log {
        let logs = proxy.logs();
        assert!(logs.contains(log), "{logs}");
    }
    assert_eq!(
        metric(
            proxy.addr,
            &format!("porter_tls_handshake_failures_total{{side=\"client\",reason=\"{reason}\"}}")
        ),
        Some(1)
    );
}

/// The bug's other half: a hello too large to take was dropped with no alert and no log line. It
/// is now answered with a fatal handshake_failure alert as soon as its length is in, logged and
/// counted.
#[test]
fn regression_a_client_hello_over_the_limit_gets_an_alert_and_a_log_line() {
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let target = format!("localhost:{}", setup.port());
    // A ClientHello declaring 70,000 bytes: its first 1,000 bytes tell.
    let mut start = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x11, 0x70];
    start.resize(1000, 0);
    let answer = answer_to_hello(proxy.addr, &target, &start, 1000, 64);
    assert_refused(
        &proxy,
        &answer,
        40,
        "a fatal handshake_failure alert, then the end",
        Some(&format!(
            "CONNECT {target}: a TLS ClientHello of 70004 bytes is more than the 65516 Porter takes"
        )),
        "hello-too-large",
    );
}

/// The bug: each read walked every record header of the hello from the start, so a hello in
/// 1-byte records (legal, RFC 8446 §5.1) trickled in cost work quadratic in its size. A hello
/// spread over more than 64 records is now refused with a handshake_failure alert, logged and
/// counted, as soon as its 65th record begins.
#[test]
fn regression_a_client_hello_in_more_than_64_records_gets_an_alert_and_a_log_line() {
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let target = format!("localhost:{}", setup.port());
    let hello = in_records(
        &padded_client_hello("localhost", &setup.porter_ca(), 10 * 1024),
        1,
    );
    // 64 records of one byte, then the 65th record's header: exactly what decides.
    let decisive = &hello[..64 * 6 + 5];
    let answer = answer_to_hello(proxy.addr, &target, decisive, 7, 64);
    assert_refused(
        &proxy,
        &answer,
        40,
        "a fatal handshake_failure alert, then the end",
        Some(&format!(
            "CONNECT {target}: a TLS ClientHello spread over more than 64 records"
        )),
        "hello-too-fragmented",
    );
}

/// The bug: a first handshake message that is no ClientHello went to rustls again on every read
/// until all of it was in. It is now refused with an unexpected_message alert once its type is in.
#[test]
fn regression_a_first_handshake_message_that_is_no_client_hello_gets_unexpected_message() {
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let target = format!("localhost:{}", setup.port());
    // A ServerHello (type 2) declaring 60,000 bytes, of which only the first 1,000 are sent.
    let mut start = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x02, 0x00, 0xea, 0x60];
    start.resize(1000, 0);
    let answer = answer_to_hello(proxy.addr, &target, &start, 1000, 64);
    assert_refused(
        &proxy,
        &answer,
        10,
        "a fatal unexpected_message alert, then the end",
        None,
        "protocol",
    );
}
