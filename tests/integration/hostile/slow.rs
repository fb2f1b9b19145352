//! Slow and many clients: slowloris connections that trickle a head a byte at a time, a client that
//! asks for a large response and never reads it, and the per-client connection cap. Each test bounds
//! its own duration with deadlines; none asserts how long anything took.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{rss_kib, send};
use crate::util::*;

/// Slowloris connections, and how they are spread over sender threads.
const SLOW_CONNECTIONS: usize = 200;
const SENDER_THREADS: usize = 4;
/// Each slow connection sends one byte per round.
const SLOW_ROUNDS: usize = 10;
const SLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Whether the peer has closed `stream`: EOF or a reset within `timeout`; false if it stays silent.
fn closed_by_peer(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // an error page is fine; keep reading to the close
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Opens `count` connections and trickles `head` into each, one byte per connection per round.
/// Returns the streams whose writes still succeeded at the end (the rest were closed by the peer).
fn trickle(addr: SocketAddr, head: Arc<Vec<u8>>, count: usize) -> Vec<TcpStream> {
    let mut streams: Vec<Option<TcpStream>> = (0..count).map(|_| Some(connect(addr))).collect();
    for round in 0..SLOW_ROUNDS {
        for slot in streams.iter_mut() {
            let Some(stream) = slot else { continue };
            if stream.write_all(&head[round..round + 1]).is_err() {
                *slot = None;
            }
        }
        thread::sleep(SLOW_INTERVAL);
    }
    streams.into_iter().flatten().collect()
}

#[test]
fn slowloris_connections_neither_starve_normal_clients_nor_outlive_the_head_timeout() {
    let origin = Origin::start(|_, path, _| (200, vec![], format!("normal {path}").into_bytes()));
    let porter = Porter::start(&["proxy", "--no-cache", "--head-timeout", "1s"]);
    let head =
        Arc::new(format!("GET {} HTTP/1.1\r\nHost: h\r\n\r\n", origin.url("/slow")).into_bytes());
    assert!(
        head.len() > SLOW_ROUNDS,
        "the slow heads must never complete"
    );

    let senders: Vec<_> = (0..SENDER_THREADS)
        .map(|_| {
            let head = Arc::clone(&head);
            let addr = porter.addr;
            thread::spawn(move || trickle(addr, head, SLOW_CONNECTIONS / SENDER_THREADS))
        })
        .collect();

    // A normal client keeps asking while the slow ones trickle; each answer comes within the socket
    // timeout or the test fails.
    let mut served = 0;
    while !senders.iter().all(|s| s.is_finished()) {
        let response = proxy_get(porter.addr, &origin.url(&format!("/normal/{served}")), &[]);
        assert_eq!(response.status, 200, "normal request {served}");
        assert_eq!(response.text(), format!("normal /normal/{served}"));
        served += 1;
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        served >= 5,
        "only {served} normal requests during the slowloris"
    );

    let mut survivors: Vec<TcpStream> = senders
        .into_iter()
        .flat_map(|s| s.join().expect("sender thread"))
        .collect();
    // Every slow connection is closed by the head timeout: those not already refused must read EOF.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut open = 0;
    for stream in survivors.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !closed_by_peer(stream, left.max(Duration::from_millis(100))) {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "{open} of {SLOW_CONNECTIONS} slowloris connections outlived --head-timeout"
    );
    assert_eq!(origin.hits(), served, "a slow head reached the origin");
    let response = proxy_get(porter.addr, &origin.url("/after"), &[]);
    assert_eq!(response.status, 200, "after the slowloris");
}

#[test]
fn a_client_that_stops_reading_is_cut_off_and_memory_stays_bounded() {
    const BIG: usize = 50 << 20;
    let body: Arc<Vec<u8>> = Arc::new(vec![b'x'; BIG]);
    let origin = Origin::start({
        let body = Arc::clone(&body);
        move |_, path, _| match path {
            "/big" => (200, vec![], body.to_vec()),
            _ => (200, vec![], b"small".to_vec()),
        }
    });
    let porter = Porter::start(&["proxy", "--no-cache", "--client-timeout", "1s"]);
    let pid = porter.child.id();

    let mut sleeper = connect(porter.addr);
    write!(
        sleeper,
        "GET {} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        origin.url("/big")
    )
    .unwrap();
    let peer = sleeper.local_addr().unwrap().to_string();

    // Wait (bounded) until the proxy logs that it gave up on this client, sampling its memory.
    let peak = Arc::new(AtomicUsize::new(0));
    let gave_up = eventually(Duration::from_secs(30), || {
        if let Some(kib) = rss_kib(pid) {
            peak.fetch_max(kib as usize, Ordering::Relaxed);
        }
        porter
            .logs()
            .lines()
            .any(|l| l.contains(&peer) && l.contains("client connection failed"))
    });
    assert!(
        gave_up,
        "the proxy never gave up on a client that does not read"
    );
    let peak_mib = peak.load(Ordering::Relaxed) / 1024;
    assert!(
        peak_mib < 64,
        "proxy RSS reached {peak_mib} MiB relaying to a stalled client"
    );

    // Others are served meanwhile and after.
    let other = proxy_get(porter.addr, &origin.url("/small"), &[]);
    assert_eq!((other.status, other.text()), (200, "small".to_string()));

    // The stalled client finally reads: what was buffered, then the close, well short of the body.
    let mut received = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    sleeper.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let ended = loop {
        match sleeper.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false;
            }
            Err(_) => break true,
        }
    };
    assert!(ended, "the stalled connection was left open");
    assert!(received < BIG, "the whole body arrived: {received} bytes");
}

#[test]
fn connection_caps_refuse_the_excess_and_recover() {
    for cap in ["--max-connections-per-client", "--max-connections"] {
        let porter = Porter::start(&["proxy", "--no-cache", cap, "20", "--idle-timeout", "30s"]);
        // 20 idle connections are admitted (each proves it with a request on the kept-alive
        // connection), the 21st is refused with a 503, and closing some frees their places.
        let mut held = Vec::new();
        for i in 0..20 {
            let mut stream = connect(porter.addr);
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let response = read_response(&mut reader, false).expect("a response");
            assert_eq!(response.status, 200, "{cap}: held connection {i}");
            held.push(stream);
        }
        let request = b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        let refused = send(porter.addr, request, false);
        assert_eq!(
            refused.status,
            Some(503),
            "{cap}: the 21st connection: {}",
            refused.excerpt()
        );
        assert!(refused.closed, "{cap}: refused connection left open");
        drop(held.drain(..5));
        let admitted = eventually(Duration::from_secs(10), || {
            send(porter.addr, request, false).status == Some(200)
        });
        assert!(
            admitted,
            "{cap}: closed connections did not free their places"
        );
    }
}
