//! Read-while-writing: requests for a response that is being fetched and stored read it as it
//! arrives, with one origin request in all, against a throttled origin that counts its requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::util::*;

const MIB: usize = 1 << 20;

fn body_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 16)) as u8
}

/// How the throttled origin sends its one response.
#[derive(Clone)]
struct Throttle {
    len: usize,
    /// Bytes per write, and the pause after each.
    chunk: usize,
    pause: Duration,
    /// Sent at full speed before the throttling starts.
    burst: usize,
    /// Close the connection after this many body bytes, as a failing origin does.
    fail_after: Option<usize>,
    /// `Transfer-Encoding: chunked` instead of Content-Length.
    chunked: bool,
    /// More header lines for the response, each ending in CRLF.
    extra_headers: &'static str,
}

impl Throttle {
    /// `len` bytes at about `per_second`.
    fn steady(len: usize, per_second: usize) -> Throttle {
        let chunk = 64 * 1024;
        Throttle {
            len,
            chunk,
            pause: Duration::from_secs_f64(chunk as f64 / per_second as f64),
            burst: 0,
            fail_after: None,
            chunked: false,
            extra_headers: "",
        }
    }
}

/// An origin that answers every request with the throttled body and counts the requests.
fn throttled_origin(throttle: Throttle) -> (SocketAddr, Arc<AtomicUsize>) {
    counting_raw_server(move |mut stream| {
        let t = &throttle;
        let framing = if t.chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", t.len)
        };
        let extra = t.extra_headers;
        let head = format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n{extra}{framing}\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let end = t.fail_after.unwrap_or(t.len);
        let mut sent = 0;
        while sent < end {
            let n = t.chunk.min(end - sent);
            let piece: Vec<u8> = (sent..sent + n).map(body_byte).collect();
            let framed = if t.chunked {
                let mut f = format!("{n:x}\r\n").into_bytes();
                f.extend_from_slice(&piece);
                f.extend_from_slice(b"\r\n");
                f
            } else {
                piece
            };
            if stream.write_all(&framed).is_err() {
                return;
            }
            sent += n;
            if sent > t.burst {
                thread::sleep(t.pause);
            }
        }
        if t.chunked && t.fail_after.is_none() {
            let _ = stream.write_all(b"0\r\n\r\n");
        }
        // A failing origin just closes, mid-body.
    })
}

fn expected_sha(len: usize) -> String {
    hex(&Sha256::digest(
        (0..len).map(body_byte).collect::<Vec<u8>>(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One client's view of its download.
#[derive(Debug)]
struct Download {
    head: String,
    body: Vec<u8>,
    /// Whether a chunked body ended with its last chunk.
    last_chunk: bool,
    /// From sending the request to the first byte of the response.
    first_byte: Duration,
}

impl Download {
    fn sha(&self) -> String {
        hex(&Sha256::digest(&self.body))
    }
}

/// GETs `url` through the proxy and reads until the proxy closes (or `stop_after` body bytes).
fn download(proxy: SocketAddr, url: &str, stop_after: Option<usize>) -> Download {
    download_as("HTTP/1.1", proxy, url, stop_after)
}

/// [`download`] with the request's HTTP version.
fn download_as(version: &str, proxy: SocketAddr, url: &str, stop_after: Option<usize>) -> Download {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let asked = Instant::now();
    write!(
        stream,
        "GET {url} {version}\r\nHost: origin\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut data = Vec::new();
    let mut first_byte = None;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        first_byte.get_or_insert_with(|| asked.elapsed());
        data.extend_from_slice(&buf[..n]);
        let head_end = data.windows(4).position(|w| w == b"\r\n\r\n");
        if let (Some(limit), Some(end)) = (stop_after, head_end)
            && data.len() - end - 4 >= limit
        {
            break; // hang up
        }
    }
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut body = data[end + 4..].to_vec();
    let mut last_chunk = false;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        (body, last_chunk) = dechunk(&body);
    }
    Download {
        head,
        body,
        last_chunk,
        first_byte: first_byte.expect("some bytes"),
    }
}

/// The payload of a chunked body, as far as it goes, and whether the last chunk came.
fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return (out, data == b"\r\n");
        }
        if data.len() < size {
            out.extend_from_slice(data);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    (out, false)
}

fn proxy_in(dir: &std::path::Path) -> Porter {
    Porter::start(&[
        "proxy",
        "--cache-dir",
        dir.to_str().unwrap(),
        "--origin-timeout",
        "5s",
    ])
}

#[test]
fn five_clients_joining_a_slow_download_read_it_as_it_arrives_with_one_origin_request() {
    let dir = tempfile::tempdir().unwrap();
    let len = 12 * MIB;
    let (origin, hits) = throttled_origin(Throttle::steady(len, 2_000_000));
    let porter = proxy_in(dir.path());
    let url = format!("http://{origin}/big.iso");
    let joins = [0u64, 500, 1500, 3000, 4500];
    let started = Instant::now();
    let clients: Vec<_> = joins
        .iter()
        .map(|&at| {
            let url = url.clone();
            let proxy = porter.addr;
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(at).saturating_sub(started.elapsed()));
                download(proxy, &url, None)
            })
        })
        .collect();
    let downloads: Vec<Download> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let expected = expected_sha(len);
    for (i, d) in downloads.iter().enumerate() {
        assert_eq!(d.body.len(), len, "client {i}: {}", d.head);
        assert_eq!(d.sha(), expected, "client {i}");
        assert!(
            d.first_byte < Duration::from_secs(1),
            "client {i} waited {:?} for its first byte",
            d.first_byte
        );
    }
    assert!(
        downloads[0].head.contains("fwd=miss; stored"),
        "{}",
        downloads[0].head
    );
    for d in &downloads[1..] {
        assert!(
            d.head.contains("Cache-Status: porter; fwd=miss; collapsed"),
            "{}",
            d.head
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one origin request in all");
    let after = download(porter.addr, &url, None);
    assert!(after.head.contains("X-Cache: HIT"), "{}", after.head);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn the_fetch_goes_on_for_readers_when_the_first_client_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let len = 4 * MIB;
    let mut throttle = Throttle::steady(len, 4_000_000);
    throttle.chunked = true;
    let (origin, hits) = throttled_origin(throttle);
    let porter = proxy_in(dir.path());
    let url = format!("http://{origin}/stream");
    let first = {
        let url = url.clone();
        let proxy = porter.addr;
        thread::spawn(move || download(proxy, &url, Some(MIB)))
    };
    thread::sleep(Duration::from_millis(50));
    let old_client = {
        let url = url.clone();
        let proxy = porter.addr;
        thread::spawn(move || download_as("HTTP/1.0", proxy, &url, None))
    };
    let second = download(porter.addr, &url, None);
    let first = first.join().unwrap();
    // An HTTP/1.0 reader cannot take chunks: its body ends with the connection.
    let old_client = old_client.join().unwrap();
    assert!(!old_client.head.contains("chunked"), "{}", old_client.head);
    assert!(old_client.head.contains("collapsed"), "{}", old_client.head);
    assert_eq!(old_client.sha(), expected_sha(len));
    assert!(first.body.len() < len, "the first client hung up early");
    assert_eq!(second.sha(), expected_sha(len), "{}", second.head);
    assert!(second.head.contains("collapsed"), "{}", second.head);
    assert!(second.last_chunk, "the follower's chunked body is whole");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let after = download(porter.addr, &url, None);
    assert!(after.head.contains("X-Cache: HIT"), "{}", after.head);
    assert_eq!(after.sha(), expected_sha(len));
}

#[test]
fn with_nobody_reading_a_hung_up_fetch_is_abandoned_unless_nearly_done() {
    let dir = tempfile::tempdir().unwrap();
    let porter = proxy_in(dir.path());
    // Far from done: 8 MiB at 4 MB/s, the client leaves after 256 KiB.
    let (far, far_hits) = throttled_origin(Throttle::steady(8 * MIB, 4_000_000));
    let url = format!("http://{far}/far");
    download(porter.addr, &url, Some(256 * 1024));
    thread::sleep(Duration::from_millis(500));
    let again = download(porter.addr, &url, Some(1));
    assert!(again.head.contains("X-Cache: MISS"), "{}", again.head);
    assert_eq!(
        far_hits.load(Ordering::SeqCst),
        2,
        "abandoned, so fetched again"
    );
    // Nearly done: all but the last 256 KiB of 4 MiB come at once, the rest in four pieces 0.8 s
    // apart; the client leaves after 3 MiB, so the proxy notices with over 90 % in hand.
    let throttle = Throttle {
        len: 4 * MIB,
        chunk: 64 * 1024,
        pause: Duration::from_millis(800),
        burst: 4 * MIB - 256 * 1024,
        fail_after: None,
        chunked: false,
        extra_headers: "",
    };
    let (near, near_hits) = throttled_origin(throttle);
    let url = format!("http://{near}/near");
    download(porter.addr, &url, Some(3 * MIB));
    assert!(
        eventually(Duration::from_secs(10), || {
            download(porter.addr, &url, Some(1))
                .head
                .contains("X-Cache: HIT")
        }),
        "the nearly finished fetch was completed and stored"
    );
    assert_eq!(near_hits.load(Ordering::SeqCst), 1);
}

#[test]
fn an_origin_failing_midway_cuts_every_reader_off_alike_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut throttle = Throttle::steady(4 * MIB, 2_000_000);
    throttle.fail_after = Some(MIB + 12_345);
    let (origin, hits) = throttled_origin(throttle);
    let porter = proxy_in(dir.path());
    let url = format!("http://{origin}/broken");
    let started = Instant::now();
    let clients: Vec<_> = [0u64, 150, 300]
        .iter()
        .map(|&at| {
            let url = url.clone();
            let proxy = porter.addr;
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(at).saturating_sub(started.elapsed()));
                download(proxy, &url, None)
            })
        })
        .collect();
    let downloads: Vec<Download> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let sent: Vec<u8> = (0..MIB + 12_345).map(body_byte).collect();
    for (i, d) in downloads.iter().enumerate() {
        assert!(
            d.head.contains("Content-Length: 4194304"),
            "client {i}: {}",
            d.head
        );
        assert_eq!(
            d.body.len(),
            sent.len(),
            "client {i} cut off where the origin stopped"
        );
        assert!(d.body == sent, "client {i} got the origin's bytes");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let again = download(porter.addr, &url, Some(1));
    assert!(
        again.head.contains("X-Cache: MISS"),
        "nothing stored: {}",
        again.head
    );
}

#[test]
fn regression_a_get_that_cannot_join_another_fetch_is_not_labelled_method() {
    let dir = tempfile::tempdir().unwrap();
    let mut throttle = Throttle::steady(2 * MIB, 2_000_000);
    throttle.extra_headers = "Vary: Accept-Language\r\n";
    let (origin, hits) = throttled_origin(throttle);
    let porter = proxy_in(dir.path());
    let url = format!("http://{origin}/page");
    let first = {
        let (url, proxy) = (url.clone(), porter.addr);
        thread::spawn(move || proxy_get(proxy, &url, &[("Accept-Language", "de")]))
    };
    thread::sleep(Duration::from_millis(300));
    // Another variant than the one being stored: it cannot read along, so it fetches its own.
    let other = proxy_get(porter.addr, &url, &[("Accept-Language", "en")]);
    assert_eq!(
        other.header("cache-status"),
        Some("porter; fwd=miss; stored")
    );
    assert_eq!(other.body.len(), 2 * MIB);
    let first = first.join().unwrap();
    assert_eq!(
        first.header("cache-status"),
        Some("porter; fwd=miss; stored")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[test]
fn regression_a_plain_get_never_reads_along_a_range_being_stored() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..100_000).map(body_byte).collect();
    let hits = Arc::new(AtomicUsize::new(0));
    let (counter, served) = (Arc::clone(&hits), body.clone());
    let origin = raw_server(move |_, mut stream| {
        let body = &served;
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        counter.fetch_add(1, Ordering::SeqCst);
        let ranged = String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("range: bytes=0-99");
        let (status, extra, part) = if ranged {
            (
                "206 Partial Content",
                "Content-Range: bytes 0-99/100000\r\n",
                &body[..100],
            )
        } else {
            ("200 OK", "", &body[..])
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nCache-Control: max-age=300\r\nETag: \"r1\"\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
            part.len()
        );
        let _ = stream.write_all(head.as_bytes());
        if ranged {
            thread::sleep(Duration::from_millis(1500)); // the part's body comes late
        }
        let _ = stream.write_all(part);
    });
    let porter = proxy_in(dir.path());
    let url = format!("http://{origin}/file");
    let part = {
        let (url, proxy) = (url.clone(), porter.addr);
        thread::spawn(move || proxy_get(proxy, &url, &[("Range", "bytes=0-99")]))
    };
    thread::sleep(Duration::from_millis(300));
    let whole = proxy_get(porter.addr, &url, &[]);
    assert_eq!(whole.status, 200, "{:?}", whole.headers);
    assert!(whole.body == body, "the whole body, not the part");
    let part = part.join().unwrap();
    assert_eq!((part.status, part.body.len()), (206, 100));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[test]
fn concurrent_misses_for_a_url_whose_responses_are_not_stored_do_not_wait_for_each_other() {
    // The origin holds each request until `want` have arrived since the last reset (or 4 s pass),
    // and records how many it held at once; its answers are never stored.
    let want = Arc::new(AtomicUsize::new(1));
    let arrived = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let origin = {
        let (want, arrived) = (Arc::clone(&want), Arc::clone(&arrived));
        let (held, most) = (Arc::clone(&held), Arc::clone(&most));
        Origin::start(move |_, _, _| {
            arrived.fetch_add(1, Ordering::SeqCst);
            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(4);
            while arrived.load(Ordering::SeqCst) < want.load(Ordering::SeqCst)
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(5));
            }
            held.fetch_sub(1, Ordering::SeqCst);
            (
                200,
                hdrs(&[("Cache-Control", "no-store")]),
                b"event".to_vec(),
            )
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let porter = proxy_in(dir.path());
    let url = origin.url("/poll");
    let first = proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        first.header("cache-status"),
        Some("porter; fwd=miss; detail=response-no-store")
    );
    // Four at once: each must reach the origin while the others are still waiting for it, not
    // wait for another's response only to find it was not stored.
    arrived.store(0, Ordering::SeqCst);
    most.store(0, Ordering::SeqCst);
    want.store(4, Ordering::SeqCst);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, proxy) = (url.clone(), porter.addr);
            thread::spawn(move || proxy_get(proxy, &url, &[]))
        })
        .collect();
    for client in clients {
        let response = client.join().unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"event"[..])
        );
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "requests waited for each other"
    );
    assert_eq!(origin.hits(), 5);
}

/// A leader's client that sends its request and then reads nothing, with a small receive window so
/// the proxy's writes to it block early.
fn never_reading_leader(proxy: SocketAddr, url: &str) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    sockopt::set_socket_recv_buffer_size(&fd, 4096).expect("SO_RCVBUF");
    rustix::net::connect(&fd, &proxy).expect("connect");
    let mut stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {url} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

/// Reads a response to its close and returns its body (dechunked when chunked).
fn read_rest(mut stream: TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
    let body = data[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        dechunk(&body).0
    } else {
        body
    }
}

#[test]
fn regression_a_leader_whose_client_stops_reading_holds_no_follower_hostage() {
    // 12 MiB at 12 MB/s: far more than the socket buffers between the proxy and a client that
    // stops reading, so a fetch paced by that client stops for good.
    let len = 12 * MIB;
    let expected = expected_sha(len);
    for (chunked, workers, leader_leaves) in
        [(false, "4", false), (true, "1", false), (false, "1", true)]
    {
        let case = format!("chunked {chunked}, --workers {workers}, leader leaves {leader_leaves}");
        let dir = tempfile::tempdir().unwrap();
        let mut throttle = Throttle::steady(len, 12_000_000);
        throttle.chunked = chunked;
        let (origin, hits) = throttled_origin(throttle);
        let porter = Porter::start(&[
            "proxy",
            "--cache-dir",
            dir.path().to_str().unwrap(),
            "--origin-timeout",
            "5s",
            "--client-timeout",
            "30s",
            "--workers",
            workers,
        ]);
        let url = format!("http://{origin}/big.bin");
        let leader = never_reading_leader(porter.addr, &url);
        thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let follower = {
            let url = url.clone();
            let proxy = porter.addr;
            thread::spawn(move || download(proxy, &url, None))
        };
        let leader = if leader_leaves {
            // Gone with the response unread (a reset): the fetch goes on for the follower.
            thread::sleep(Duration::from_millis(200));
            drop(leader);
            None
        } else {
            Some(leader)
        };
        let follower = follower.join().unwrap();
        // A hang bound, not a timing: the leader's client would hold it for 30 s.
        let took = started.elapsed();
        assert_eq!(follower.body.len(), len, "{case}: {}", follower.head);
        assert_eq!(follower.sha(), expected, "{case}");
        assert!(took < Duration::from_secs(10), "{case}: took {took:?}");
        assert!(
            follower.head.contains("collapsed") || follower.head.contains("X-Cache: HIT"),
            "{case}: {}",
            follower.head
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{case}: one origin request");
        let after = download(porter.addr, &url, None);
        assert!(
            after.head.contains("X-Cache: HIT"),
            "{case}: {}",
            after.head
        );
        // The leader's client, reading at last, still gets its whole response, from the entry.
        if let Some(leader) = leader {
            let body = read_rest(leader);
            assert_eq!(body.len(), len, "{case}: the leader's own body");
            assert_eq!(hex(&Sha256::digest(&body)), expected, "{case}");
        }
    }
}

#[test]
fn regression_an_intercepted_https_leader_whose_client_stops_reading_holds_no_follower_hostage() {
    use crate::intercept::{Setup, get_inside, tls_through, trusting};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, StreamOwned};
    let len = 12 * MIB;
    let body: Arc<Vec<u8>> = Arc::new((0..len).map(body_byte).collect());
    let served = Arc::clone(&body);
    let setup = Setup::with_origin(crate::tls::TlsOrigin::start_with(move |_, _, _| {
        let headers = hdrs(&[("Cache-Control", "max-age=600")]);
        (200, headers, served.to_vec())
    }));
    let proxy = setup.proxy(&["--client-timeout", "30s", "--workers", "1"]);
    let target = format!("localhost:{}", setup.port());
    // The leader: TLS inside the tunnel over a small receive window, one GET, then no reading.
    let tcp = {
        use rustix::net::{AddressFamily, SocketType, sockopt};
        let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        sockopt::set_socket_recv_buffer_size(&fd, 4096).expect("SO_RCVBUF");
        rustix::net::connect(&fd, &proxy.addr).expect("connect");
        let mut tcp = TcpStream::from(fd);
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        write!(tcp, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tcp.read(&mut byte).unwrap(), 1, "the CONNECT answer");
            head.push(byte[0]);
        }
        tcp
    };
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(trusting(&setup.porter_ca()), name).unwrap();
    let mut leader = StreamOwned::new(conn, tcp);
    write!(leader, "GET /big.bin HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    leader.flush().unwrap();
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut follower = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
    let response = get_inside(&mut follower, &target, "/big.bin", true);
    let took = started.elapsed();
    assert_eq!(response.body.len(), len);
    assert!(response.body == *body, "the follower's body differs");
    // A hang bound, not a timing: the leader's client would hold it for 30 s.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(setup.origin.hits(), 1, "one origin request");
    // The leader's client, reading at last, gets its whole response through TLS, from the entry.
    let own = crate::intercept::read_tls_response(&mut leader);
    assert_eq!(own.status, 200);
    assert!(own.body == *body, "the leader's own body differs");
}

/// An origin that sends its response head, waits, then sends `len` body bytes (chunked or with a
/// Content-Length) in pieces of `piece`: a request that comes during the wait joins an entry whose
/// body has not reached the disk yet.
fn origin_pausing_after_the_head(
    len: usize,
    piece: usize,
    chunked: bool,
) -> (SocketAddr, Arc<AtomicUsize>) {
    counting_raw_server(move |mut stream| {
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {len}")
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n{framing}\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(700));
        let body: Vec<u8> = (0..len).map(body_byte).collect();
        for part in body.chunks(piece) {
            let framed = if chunked {
                let mut f = format!("{:x}\r\n", part.len()).into_bytes();
                f.extend_from_slice(part);
                f.extend_from_slice(b"\r\n");
                f
            } else {
                part.to_vec()
            };
            if stream.write_all(&framed).is_err() {
                return;
            }
        }
        if chunked {
            let _ = stream.write_all(b"0\r\n\r\n");
        }
    })
}

/// The entry's temporary file is created by its first write to the disk, after the entry is
/// published to readers (issue 26: a small miss creates, writes and commits in one disk job). A
/// reader that joins before that write must still get the whole body: small (written and committed
/// in one job), chunked, and large (the leader's client is served from the file too).
#[test]
fn a_reader_joining_before_the_first_body_byte_is_stored_gets_the_whole_body() {
    for (name, len, piece, chunked) in [
        ("small", 1024, 1024, false),
        ("chunked", 1024, 1024, true),
        ("large", 300 * 1024, 16 * 1024, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (origin, hits) = origin_pausing_after_the_head(len, piece, chunked);
        let porter = proxy_in(dir.path());
        // A first entry stored: until one temporary file was created, a store creates its own
        // before it is published (so a refusing disk is known); after, its first write does.
        let warm_up = download(porter.addr, &format!("http://{origin}/warm-up"), None);
        assert!(warm_up.head.contains("stored"), "{}", warm_up.head);
        let url = format!("http://{origin}/{name}");
        let leader = {
            let url = url.clone();
            let proxy = porter.addr;
            thread::spawn(move || download(proxy, &url, None))
        };
        // The follower comes while the origin waits after its head (the leader's writer exists,
        // no body byte does).
        thread::sleep(Duration::from_millis(250));
        let follower = download(porter.addr, &url, None);
        let leader = leader.join().unwrap();
        let expected = expected_sha(len);
        for (who, d) in [("leader", &leader), ("follower", &follower)] {
            assert_eq!(d.body.len(), len, "{name} {who}: {}", d.head);
            assert_eq!(d.sha(), expected, "{name} {who}");
            assert!(!chunked || d.last_chunk, "{name} {who}: no last chunk");
        }
        assert!(
            follower.head.contains("fwd=miss; collapsed"),
            "{name}: {}",
            follower.head
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2, "{name}: one origin request");
        let after = download(porter.addr, &url, None);
        assert!(
            after.head.contains("X-Cache: HIT"),
            "{name}: {}",
            after.head
        );
        assert_eq!(after.sha(), expected, "{name}: the stored body");
    }
}
