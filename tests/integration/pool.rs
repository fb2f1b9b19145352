//! The worker pool under pressure: more clients than workers, idle keep-alive connections and tunnels
//! that must not pin workers, a slow origin that must not hold the only worker, and shutdown.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::util::*;

fn slow_origin(delay: Duration) -> Origin {
    Origin::start(move |_, path, _| {
        std::thread::sleep(delay);
        (
            200,
            hdrs(&[("Cache-Control", "no-store")]),
            path.as_bytes().to_vec(),
        )
    })
}

#[test]
fn a_slow_origin_with_more_clients_than_workers_serves_everyone() {
    let origin = slow_origin(Duration::from_millis(300));
    let porter = Porter::start(&["proxy", "--no-cache", "--workers", "2"]);
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (addr, url) = (porter.addr, origin.url(&format!("/{i}")));
            std::thread::spawn(move || proxy_get(addr, &url, &[]))
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        let response = client.join().unwrap();
        assert_eq!((response.status, response.text()), (200, format!("/{i}")));
    }
    assert_eq!(origin.hits(), 6);
}

#[test]
fn idle_keep_alive_connections_and_tunnels_do_not_pin_workers() {
    let origin = slow_origin(Duration::ZERO);
    // A TCP "TLS origin" for tunnels that accepts and stays silent.
    let tunnel_target = TcpListener::bind("127.0.0.1:0").unwrap();
    let tunnel_port = tunnel_target.local_addr().unwrap().port().to_string();
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--workers",
        "2",
        "--connect-port",
        &tunnel_port,
    ]);
    // Twenty browsers that made one request each and keep their connections open.
    let mut idle = Vec::new();
    for i in 0..20 {
        let (mut writer, mut reader) = connect_split(porter.addr);
        write!(
            writer,
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            origin.url(&format!("/idle{i}"))
        )
        .unwrap();
        assert_eq!(read_response(&mut reader, false).unwrap().status, 200);
        idle.push((writer, reader));
    }
    // Ten open tunnels with no traffic.
    let mut tunnels = Vec::new();
    for _ in 0..10 {
        let mut stream = connect(porter.addr);
        write!(
            stream,
            "CONNECT 127.0.0.1:{tunnel_port} HTTP/1.1\r\nHost: 127.0.0.1:{tunnel_port}\r\n\r\n"
        )
        .unwrap();
        let mut established = [0u8; 39];
        stream.read_exact(&mut established).unwrap();
        assert!(established.starts_with(b"HTTP/1.1 200"));
        tunnels.push(stream);
    }
    // Two workers, thirty idle connections: a new client is still served, and so are the idle ones.
    assert_eq!(
        proxy_get(porter.addr, &origin.url("/fresh"), &[]).status,
        200
    );
    for (i, (writer, reader)) in idle.iter_mut().enumerate() {
        write!(
            writer,
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            origin.url(&format!("/again{i}"))
        )
        .unwrap();
        assert_eq!(
            read_response(reader, false).unwrap().text(),
            format!("/again{i}")
        );
    }
    let status = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n")
        .unwrap()
        .text();
    assert!(
        status.contains("porter_open_connections 31\n"),
        "20 idle + 10 tunnels + this one:\n{status}"
    );
}

#[test]
fn a_request_waiting_on_a_slow_origin_leaves_the_only_worker_free() {
    let origin = slow_origin(Duration::from_millis(3000));
    let porter = Porter::start(&["proxy", "--no-cache", "--workers", "1"]);
    let busy = {
        let (addr, url) = (porter.addr, origin.url("/busy"));
        std::thread::spawn(move || proxy_get(addr, &url, &[]).status)
    };
    assert!(
        eventually(Duration::from_secs(5), || origin.hits() == 1),
        "the slow request reached the origin"
    );
    // The one worker is not held by the slow origin: it answers, and counts the waiting request.
    let metrics = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(!busy.is_finished(), "answered while the slow request waits");
    assert!(
        metrics
            .text()
            .contains("porter_waiting_connections{state=\"origin_read\"} 1\n"),
        "{}",
        metrics.text()
    );
    assert_eq!(busy.join().unwrap(), 200);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let origin = slow_origin(Duration::from_millis(800));
    let mut porter = Porter::start(&["proxy", "--no-cache"]);
    let in_flight = {
        let (addr, url) = (porter.addr, origin.url("/slow"));
        std::thread::spawn(move || proxy_get(addr, &url, &[]))
    };
    assert!(eventually(Duration::from_secs(5), || origin.hits() == 1));
    let status = porter.terminate().expect("exits within the grace period");
    assert!(status.success(), "{status:?}");
    let response = in_flight.join().unwrap();
    assert_eq!(
        (response.status, response.text()),
        (200, "/slow".to_string())
    );
    assert!(
        std::net::TcpStream::connect(porter.addr).is_err(),
        "no longer listening"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let origin = slow_origin(Duration::from_secs(30));
    let mut porter = Porter::start(&["proxy", "--no-cache", "--shutdown-grace", "60s"]);
    let _in_flight = {
        let (addr, url) = (porter.addr, origin.url("/forever"));
        std::thread::spawn(move || {
            raw_request(addr, format!("GET {url} HTTP/1.1\r\n\r\n").as_bytes())
        })
    };
    assert!(eventually(Duration::from_secs(5), || origin.hits() == 1));
    let pid = porter.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(eventually(Duration::from_secs(5), || porter
        .logs()
        .contains("shutting down")));
    assert_eq!(
        porter.child.try_wait().unwrap(),
        None,
        "still draining the in-flight request"
    );
    let status = porter
        .terminate()
        .expect("the second signal ends it without waiting for the grace period");
    assert!(!status.success());
}
