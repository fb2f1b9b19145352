//! A tier of Porter nodes: HAProxy with `deploy/haproxy.cfg` in front of three nodes (URLs sharded
//! by consistent hashing, a node's loss moving only its URLs, the real client seen through the PROXY
//! protocol), the PROXY protocol on raw sockets, and `/proxy.pac` with `--pac-peer`.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// A running haproxy, killed when dropped.
struct Haproxy {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether haproxy is installed: see `util::require_tool`.
fn haproxy_installed() -> bool {
    require_tool(&["haproxy"], "haproxy").is_some()
}

fn start_haproxy(front: SocketAddr, nodes: &[SocketAddr]) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("haproxy.log");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");
    let child = Command::new("haproxy")
        .args(["-db", "-f", config])
        .env("PORTER_FRONT", front.to_string())
        .env("PORTER_NODE1", nodes[0].to_string())
        .env("PORTER_NODE2", nodes[1].to_string())
        .env("PORTER_NODE3", nodes[2].to_string())
        .env("PORTER_CHECK_INTER", "200ms")
        .env("PORTER_TIMEOUT_CONNECT", "1s")
        // HAProxy connects to the nodes from this address, so a node logging 127.0.0.1 can only
        // have learnt it from the PROXY header.
        .env("PORTER_SOURCE", "127.0.0.9")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("haproxy starts");
    let haproxy = Haproxy {
        child,
        log,
        _dir: dir,
    };
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect_timeout(&front, Duration::from_millis(200)).is_ok()
    });
    assert!(up, "haproxy did not listen: {}", haproxy.logs());
    haproxy
}

/// One GET through `proxy`; returns the status and the client's own address.
fn get(proxy: SocketAddr, url: &str) -> (u16, SocketAddr) {
    let mut stream = connect(proxy);
    let local = stream.local_addr().unwrap();
    // HAProxy answers 400 when Host differs from the absolute URI's authority (RFC 9112 §3.2.2).
    let host = url.split('/').nth(2).unwrap();
    // One write: `write!` on a socket sends each piece apart, and Nagle then waits for an ACK.
    let request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let status = read_response(&mut BufReader::new(stream), false)
        .map(|r| r.status)
        .unwrap_or(0);
    (status, local)
}

#[test]
fn haproxy_shards_urls_over_three_nodes_and_a_lost_node_moves_only_its_urls() {
    if !haproxy_installed() {
        return;
    }
    let origin = Origin::start(|_, path, _| {
        let headers = hdrs(&[("Cache-Control", "max-age=600")]);
        (200, headers, format!("body of {path}").into_bytes())
    });
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Porter> = dirs
        .iter()
        .map(|d| {
            Porter::start(&[
                "proxy",
                "--accept-proxy-protocol",
                "--cache-dir",
                d.path().to_str().unwrap(),
            ])
        })
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let front: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let haproxy = start_haproxy(front, &addrs);

    let urls: Vec<String> = (0..60)
        .map(|i| origin.url(&format!("/u{i}?v={i}")))
        .collect();
    let mut clients = Vec::new();
    for _round in 0..3 {
        for url in &urls {
            let (status, client) = get(front, url);
            assert_eq!(status, 200, "{url}: {}", haproxy.logs());
            clients.push((client, url.clone()));
        }
    }
    assert_eq!(origin.hits(), 60, "each URL reached the origin once");

    // Who owns what: the node that logged the URL's MISS.
    let owner_of = |url: &str, logs: &[String]| -> Vec<usize> {
        let needle = format!(" GET {url} 200 ");
        (0..logs.len())
            .filter(|&n| {
                logs[n]
                    .lines()
                    .any(|l| l.contains(&needle) && l.contains(" MISS"))
            })
            .collect()
    };
    let mut logs = Vec::new();
    assert!(eventually(Duration::from_secs(5), || {
        logs = nodes.iter().map(Porter::logs).collect();
        urls.iter().all(|u| owner_of(u, &logs).len() == 1)
    }));
    let owners: HashMap<&str, usize> = urls
        .iter()
        .map(|u| (u.as_str(), owner_of(u, &logs)[0]))
        .collect();
    let mut share = [0usize; 3];
    for owner in owners.values() {
        share[*owner] += 1;
    }
    eprintln!("URLs owned by node1..3: {share:?}");
    assert!(
        share.iter().all(|&n| n > 0),
        "spread over all nodes: {share:?}"
    );
    // The nodes saw the real client (its own port), never HAProxy's source address.
    let lines: Vec<String> = clients
        .iter()
        .map(|(client, url)| format!(" {client} GET {url} 200 "))
        .collect();
    let all_logged = eventually(Duration::from_secs(5), || {
        logs = nodes.iter().map(Porter::logs).collect();
        lines
            .iter()
            .all(|line| logs.iter().any(|l| l.contains(line)))
    });
    assert!(
        all_logged,
        "every request is logged with its client's own address"
    );
    // HAProxy's own health checks come from its source address (a v2 LOCAL header); requests never.
    let from_haproxy = |l: &str| l.contains(" 127.0.0.9:") && l.contains(" GET http://");
    assert!(!logs.iter().any(|l| l.lines().any(from_haproxy)));
    assert!(
        logs.iter()
            .any(|l| l.contains(" 127.0.0.9:") && l.contains(" GET /metrics 200 "))
    );

    // Lose the node that owns the most URLs, and wait for the health check to notice.
    let lost = (0..3).max_by_key(|&n| share[n]).unwrap();
    let _ = nodes[lost].child.kill();
    let _ = nodes[lost].child.wait();
    let name = format!("node{} is DOWN", lost + 1);
    assert!(
        eventually(Duration::from_secs(10), || haproxy.logs().contains(&name)),
        "haproxy never marked {name}: {}",
        haproxy.logs()
    );
    for url in &urls {
        let (status, _) = get(front, url);
        assert_eq!(status, 200, "{url} after the loss");
    }
    let requests = origin.requests.lock().unwrap().clone();
    for url in &urls {
        let path = url.split_once(&origin.addr.to_string()).unwrap().1;
        let line = format!("GET {path} HTTP/1.1");
        let seen = requests.iter().filter(|r| r.starts_with(&line)).count();
        let expected = if owners[url.as_str()] == lost { 2 } else { 1 };
        assert_eq!(
            seen,
            expected,
            "{url} (owned by node{})",
            owners[url.as_str()] + 1
        );
    }
    eprintln!(
        "after node{} stopped: {} URLs fetched again, origin requests {}",
        lost + 1,
        share[lost],
        requests.len()
    );
}

#[test]
fn a_proxy_protocol_header_names_the_client_that_acls_and_the_access_log_see() {
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--accept-proxy-protocol",
        "--allow",
        "127.0.0.0/8",
        "--allow",
        "10.0.0.0/8",
    ]);
    let page = "GET /metrics HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    let v1 = format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 3128\r\n{page}");
    assert_eq!(raw_request(porter.addr, v1.as_bytes()).unwrap().status, 200);
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[10, 1, 2, 3, 127, 0, 0, 1]);
    v2.extend_from_slice(&5151u16.to_be_bytes());
    v2.extend_from_slice(&3128u16.to_be_bytes());
    v2.extend_from_slice(page.as_bytes());
    assert_eq!(raw_request(porter.addr, &v2).unwrap().status, 200);
    // This peer (loopback, the default --proxy-protocol-from) must send a header.
    assert_eq!(
        raw_request(porter.addr, page.as_bytes()).unwrap().status,
        400
    );
    let garbage = format!("PROXY TCP4 nonsense\r\n{page}");
    assert_eq!(
        raw_request(porter.addr, garbage.as_bytes()).unwrap().status,
        400
    );
    assert!(eventually(Duration::from_secs(5), || {
        let logs = porter.logs();
        logs.contains(" 10.9.8.7:4242 GET /metrics 200 ")
            && logs.contains(" 10.1.2.3:5151 GET /metrics 200 ")
    }));

    // A relayed client outside --allow is refused like a direct one.
    let strict = Porter::start(&[
        "proxy",
        "--no-cache",
        "--accept-proxy-protocol",
        "--allow",
        "127.0.0.1/32",
    ]);
    let answer = raw_request(strict.addr, v1.as_bytes()).unwrap();
    assert_eq!(answer.status, 403);
    assert!(eventually(Duration::from_secs(5), || strict
        .logs()
        .contains("refused 10.9.8.7:4242")));
}

#[test]
fn regression_a_proxy_header_from_a_peer_not_in_proxy_protocol_from_is_refused() {
    // Every --allow'ed peer could name any client it liked: only 127.0.0.2 is trusted here, and this
    // client connects from 127.0.0.1.
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--accept-proxy-protocol",
        "--proxy-protocol-from",
        "127.0.0.2/32",
        "--allow",
        "127.0.0.0/8",
        "--allow",
        "10.0.0.0/8",
    ]);
    let page = "GET /metrics HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    let v1 = format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 3128\r\n{page}");
    let refused = raw_request(porter.addr, v1.as_bytes()).unwrap();
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("--proxy-protocol-from"));
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[10, 1, 2, 3, 127, 0, 0, 1, 0x14, 0x1f, 0x0c, 0x38]);
    v2.extend_from_slice(page.as_bytes());
    assert_eq!(raw_request(porter.addr, &v2).unwrap().status, 400);
    // Without a header an untrusted peer is an ordinary client.
    assert_eq!(
        raw_request(porter.addr, page.as_bytes()).unwrap().status,
        200
    );
    // Both forged headers (v1 and v2) are refused by a line naming the real peer, and the plain
    // request is logged from it too.
    assert!(
        eventually(Duration::from_secs(5), || {
            let logs = porter.logs();
            let refusals = logs
                .lines()
                .filter(|line| {
                    line.contains("refused 127.0.0.1:")
                        && line.ends_with(
                            ": PROXY protocol header from a peer not in --proxy-protocol-from",
                        )
                })
                .count();
            refusals == 2
                && logs
                    .lines()
                    .any(|line| line.contains("127.0.0.1") && line.contains(" GET /metrics 200 "))
        }),
        "{}",
        porter.logs()
    );
    let logs = porter.logs();
    assert!(
        !logs.contains("10.9.8.7") && !logs.contains("10.1.2.3"),
        "{logs}"
    );
}

#[test]
fn regression_a_trusted_peer_s_proxy_header_names_the_logged_client_and_one_without_is_refused() {
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--accept-proxy-protocol",
        "--proxy-protocol-from",
        "127.0.0.1/32",
        "--allow",
        "127.0.0.0/8",
        "--allow",
        "10.0.0.0/8",
    ]);
    let page = "GET /metrics HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    let v1 = format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 3128\r\n{page}");
    assert_eq!(raw_request(porter.addr, v1.as_bytes()).unwrap().status, 200);
    let missing = raw_request(porter.addr, page.as_bytes()).unwrap();
    assert_eq!(missing.status, 400, "{}", missing.text());
    assert!(
        eventually(Duration::from_secs(5), || {
            let logs = porter.logs();
            logs.contains(" 10.9.8.7:4242 GET /metrics 200 ")
                && logs.contains("no PROXY protocol header from a peer in --proxy-protocol-from")
        }),
        "{}",
        porter.logs()
    );
}

#[test]
fn regression_proxy_protocol_from_reloads_with_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    let base = "no-cache = true\naccept-proxy-protocol = true\nallow = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n";
    crate::deploy::write_config(
        &config,
        &format!("{base}proxy-protocol-from = [\"127.0.0.2/32\"]\n"),
    );
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    let v1 = "PROXY TCP4 10.9.8.7 127.0.0.1 4242 3128\r\nGET /metrics HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(porter.addr, v1.as_bytes()).unwrap().status, 400);
    reload(
        &porter,
        &config,
        &format!("{base}proxy-protocol-from = [\"127.0.0.1/32\"]\n"),
    );
    assert_eq!(raw_request(porter.addr, v1.as_bytes()).unwrap().status, 200);
}

#[test]
fn without_the_flag_a_proxy_header_is_not_trusted() {
    let porter = Porter::start(&["proxy", "--no-cache"]);
    let v1 = "PROXY TCP4 10.9.8.7 127.0.0.1 4242 3128\r\nGET /metrics HTTP/1.1\r\nHost: p\r\n\r\n";
    assert_eq!(raw_request(porter.addr, v1.as_bytes()).unwrap().status, 400);
}

#[test]
fn the_pac_file_with_peers_lists_every_node() {
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--pac-peer",
        "127.0.0.2:3128",
        "--pac-peer",
        "127.0.0.3:3128",
    ]);
    let pac = proxy_get(
        porter.addr,
        &format!("http://{}/proxy.pac", porter.addr),
        &[],
    );
    assert_eq!(pac.status, 200);
    let nodes = format!(
        "var PORTER_NODES = [\"{}\", \"127.0.0.2:3128\", \"127.0.0.3:3128\"];",
        porter.addr
    );
    assert!(pac.text().contains(&nodes), "{}", pac.text());
}
