//! SIGHUP reloads the client-side timeouts (`head-timeout`, `idle-timeout`, `client-timeout`):
//! connections accepted after the reload are held to the new values, while a keep-alive connection
//! idle since before it and a CONNECT tunnel opened before it carry on.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::deploy::{echo_server, echo_through, get_on, open_tunnel, write_config};
use crate::util::*;

/// Far above anything the test waits for: a close that comes from it would fail the bounds below.
const BEFORE: &str = "30s";
/// How long, at most, a connection held to the reloaded 1 s timeouts may live (sweeps, a loaded
/// machine); well under [`BEFORE`].
const BOUND: Duration = Duration::from_secs(10);

/// Reads until the proxy closes `stream` (EOF or a reset), and returns how long that took; panics if
/// it is still open after [`BOUND`].
fn time_to_close(stream: &mut TcpStream, since: Instant, what: &str) -> Duration {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {} // an error page is fine; read on to the close
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: still open after {BOUND:?}, so the reloaded timeout did not apply")
            }
            Err(_) => return since.elapsed(),
        }
    }
}

fn config_text(echo_port: u16, timeout: &str) -> String {
    format!(
        "no-cache = true\nconnect-port = [{echo_port}]\nhead-timeout = \"{timeout}\"\n\
         idle-timeout = \"{timeout}\"\nclient-timeout = \"{timeout}\"\n"
    )
}

#[test]
fn reload_shortens_the_client_timeouts_for_new_connections_while_older_ones_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    let origin = Origin::start(|_, path, _| (200, vec![], format!("page {path}").into_bytes()));
    let echo = echo_server();
    write_config(&config, &config_text(echo.port(), BEFORE));
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    let url = origin.url("/page");
    let mut keep_alive = BufReader::new(connect(porter.addr));
    assert_eq!(get_on(&mut keep_alive, &url, &[]).unwrap().status, 200);
    let parked = Instant::now();
    let mut tunnel = open_tunnel(porter.addr, &echo.to_string(), "none");
    assert_eq!(echo_through(&mut tunnel, "before"), "before");

    reload(&porter, &config, &config_text(echo.port(), "1s"));
    assert!(
        !porter.logs().contains("needs a restart"),
        "{}",
        porter.logs()
    );

    // Silent after connecting: the idle timeout.
    let start = Instant::now();
    let mut silent = connect(porter.addr);
    let idle = time_to_close(&mut silent, start, "a connection that sends nothing");
    // Half a head: the head timeout.
    let start = Instant::now();
    let mut half_head = connect(porter.addr);
    write!(half_head, "GET {url} HTTP/1.1\r\nHost: x\r\n").unwrap();
    let head = time_to_close(&mut half_head, start, "a connection that sends half a head");
    // A whole head, then part of its body: the body read under the client timeout.
    let start = Instant::now();
    let mut half_body = connect(porter.addr);
    write!(
        half_body,
        "POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes."
    )
    .unwrap();
    let body = time_to_close(&mut half_body, start, "a connection that sends half a body");
    for (name, took) in [("idle", idle), ("head", head), ("client", body)] {
        assert!(
            took >= Duration::from_millis(500),
            "{name}: closed after {took:?}, before even the new 1 s timeout"
        );
    }

    // Older than the reload: idle under the 30 s idle timeout, which it keeps; the tunnel lives by
    // its own idle timeout.
    assert!(
        parked.elapsed() < Duration::from_secs(25),
        "the test ran too slowly to show the old deadline kept"
    );
    let again = get_on(&mut keep_alive, &url, &[]).unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), "page /page");
    assert_eq!(echo_through(&mut tunnel, "after"), "after");
}
