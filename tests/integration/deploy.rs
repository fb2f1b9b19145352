//! Running Porter for a team: the config file and its overrides, `--check`, SIGHUP reload while a
//! keep-alive connection and a CONNECT tunnel stay up, a broken file on reload, the refused cache
//! folder, `porter cache SUBCOMMAND --cache-dir`, and `--via off` with loops still caught.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;

use crate::util::*;

/// `Proxy-Authorization` (or `Authorization`) value for `user:password`.
pub fn basic(pair: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Sends a signal to the running proxy.
pub fn signal(porter: &Porter, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &porter.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// An origin that answers every request with the request's header lines as its body.
fn echo_headers_origin() -> Origin {
    Origin::start(|_, _, headers| {
        let body: String = headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
        (
            200,
            hdrs(&[("Content-Type", "text/plain")]),
            body.into_bytes(),
        )
    })
}

/// A TCP server echoing every byte it receives, for tunnels.
pub fn echo_server() -> std::net::SocketAddr {
    raw_server(|_, mut stream| {
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Sends a GET for `url` with `headers` on an open keep-alive connection and reads the response.
pub fn get_on(
    reader: &mut BufReader<TcpStream>,
    url: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut request = format!("GET {url} HTTP/1.1\r\nHost: x\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    reader.get_mut().write_all(request.as_bytes())?;
    read_response(reader, false)
}

/// Opens a CONNECT tunnel to `target` with credentials; returns the socket positioned after the head.
pub fn open_tunnel(proxy: std::net::SocketAddr, target: &str, auth: &str) -> TcpStream {
    let mut stream = connect(proxy);
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {auth}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "head ended: {head:?}");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    stream
}

/// Writes `text` through the tunnel and reads the echo back.
pub fn echo_through(tunnel: &mut TcpStream, text: &str) -> String {
    tunnel.write_all(text.as_bytes()).unwrap();
    let mut buf = vec![0u8; text.len()];
    tunnel.read_exact(&mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

/// A metric's value in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

pub fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn config_file_settings_apply_and_the_command_line_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    let origin = echo_headers_origin();
    write_config(
        &config,
        "# a team's proxy\nno-cache = true\nworkers = 2\ndeny-host = [\"127.0.0.1\", \"denied.test\"]\n",
    );
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    assert_eq!(proxy_get(porter.addr, &origin.url("/"), &[]).status, 403);
    assert_eq!(
        proxy_get(porter.addr, "http://denied.test/", &[]).status,
        403
    );
    drop(porter);
    // `--deny-host` on the command line replaces the file's list: 127.0.0.1 is allowed again.
    let porter = Porter::start(&[
        "proxy",
        "--config",
        config.to_str().unwrap(),
        "--deny-host",
        "denied.test",
    ]);
    assert_eq!(proxy_get(porter.addr, &origin.url("/"), &[]).status, 200);
    assert_eq!(
        proxy_get(porter.addr, "http://denied.test/", &[]).status,
        403
    );
    let metrics = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(metric(&metrics.text(), "porter_workers"), Some(2));
}

#[test]
fn check_prints_the_effective_configuration_or_names_the_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    write_config(
        &config,
        "workers = 3\nauth-user = [\"alice:s3cret\"]\norigin-timeout = \"5s\"\n",
    );
    let path = config.to_str().unwrap();
    let run = run_porter(
        &["proxy", "--config", path, "--check", "--workers", "4"],
        dir.path(),
        &[],
        None,
    );
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains("workers = 4"), "{}", run.stdout);
    assert!(
        run.stdout.contains("origin-timeout = \"5s\""),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("alice:********") && !run.stdout.contains("s3cret"));
    write_config(&config, "workers = 3\n\ncache-size = \"a lot\"\n");
    let run = run_porter(
        &["proxy", "--config", path, "--check"],
        dir.path(),
        &[],
        None,
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("porter.toml:3: key `cache-size`"),
        "{}",
        run.stderr
    );
    write_config(&config, "wokers = 3\n");
    let run = run_porter(
        &["proxy", "--config", path, "--check"],
        dir.path(),
        &[],
        None,
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(":1: key `wokers`: no such setting"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_example_config_file_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/porter.toml");
    let dir = tempfile::tempdir().unwrap();
    let run = run_porter(
        &["proxy", "--config", example.to_str().unwrap(), "--check"],
        dir.path(),
        &[],
        None,
    );
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains("deny-host = ["), "{}", run.stdout);
}

#[test]
fn reload_changes_a_deny_rule_and_an_auth_user_while_a_keep_alive_connection_and_a_tunnel_stay_up()
{
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    let origin = echo_headers_origin();
    let echo = echo_server();
    let base = format!("no-cache = true\nconnect-port = [{}]\n", echo.port());
    write_config(&config, &format!("{base}auth-user = [\"alice:one\"]\n"));
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    let (alice, bob) = (basic("alice:one"), basic("bob:two"));
    let mut keep_alive = BufReader::new(connect(porter.addr));
    let url = origin.url("/page");
    let first = get_on(&mut keep_alive, &url, &[("Proxy-Authorization", &alice)]).unwrap();
    assert_eq!(first.status, 200);
    let mut tunnel = open_tunnel(porter.addr, &echo.to_string(), &alice);
    assert_eq!(echo_through(&mut tunnel, "before"), "before");

    reload(
        &porter,
        &config,
        &format!("{base}auth-user = [\"bob:two\"]\ndeny-host = [\"127.0.0.1\"]\nworkers = 9\n"),
    );
    assert!(
        porter
            .logs()
            .contains("--workers changed in the configuration: it needs a restart; kept")
    );
    // The same keep-alive connection: bob is admitted now, and the new rule denies the origin.
    let after = get_on(&mut keep_alive, &url, &[("Proxy-Authorization", &bob)]).unwrap();
    assert_eq!(after.status, 403, "{}", after.text());
    assert!(after.text().contains("--deny-host 127.0.0.1"));
    let alice_now = get_on(&mut keep_alive, &url, &[("Proxy-Authorization", &alice)]).unwrap();
    assert_eq!(alice_now.status, 407);
    // The tunnel opened before the reload still carries bytes.
    assert_eq!(echo_through(&mut tunnel, "after"), "after");
    let metrics = raw_request(
        porter.addr,
        format!("GET /metrics HTTP/1.1\r\nAuthorization: {bob}\r\n\r\n").as_bytes(),
    )
    .unwrap()
    .text();
    assert_eq!(
        metric(&metrics, "porter_config_reloads_total{result=\"applied\"}"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "porter_workers"),
        Some(5),
        "workers is restart-only"
    );
}

#[test]
fn a_broken_file_on_reload_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    let origin = echo_headers_origin();
    write_config(&config, "no-cache = true\ndeny-host = [\"127.0.0.1\"]\n");
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    assert_eq!(proxy_get(porter.addr, &origin.url("/"), &[]).status, 403);
    for (n, broken) in [
        "deny-host = [\n",
        "deny-host = []\nworkerz = 2\n",
        "allow = [\"300.1.1.1\"]\n",
    ]
    .into_iter()
    .enumerate()
    {
        write_config(&config, broken);
        signal(&porter, "HUP");
        assert!(
            eventually(Duration::from_secs(10), || porter
                .logs()
                .matches("reload refused, still running the previous configuration")
                .count()
                == n + 1),
            "{}",
            porter.logs()
        );
        assert_eq!(proxy_get(porter.addr, &origin.url("/"), &[]).status, 403);
    }
    assert!(porter.logs().contains("key `workerz`"), "{}", porter.logs());
    let metrics = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n")
        .unwrap()
        .text();
    assert_eq!(
        metric(&metrics, "porter_config_reloads_total{result=\"refused\"}"),
        Some(3)
    );
    assert_eq!(
        metric(&metrics, "porter_config_reloads_total{result=\"applied\"}"),
        Some(0)
    );
}

#[test]
fn regression_a_mistyped_cache_dir_only_warned_then_ran_without_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    for cache_dir in ["file", "file/cache"] {
        let run = run_porter(
            &["proxy", "--listen", "127.0.0.1:0", "--cache-dir", cache_dir],
            dir.path(),
            &[],
            None,
        );
        assert_eq!(run.code, Some(2), "{run:?}");
        assert!(run.stderr.contains("--no-cache"), "{}", run.stderr);
        assert!(!run.stdout.contains("listening on"), "{}", run.stdout);
    }
}

#[test]
fn regression_porter_cache_refused_cache_dir_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("c")).unwrap();
    let after = run_porter(
        &["cache", "stats", "--cache-dir", "c"],
        dir.path(),
        &[],
        None,
    );
    let before = run_porter(
        &["cache", "--cache-dir", "c", "stats"],
        dir.path(),
        &[],
        None,
    );
    assert!(after.ok() && before.ok(), "{after:?} {before:?}");
    assert_eq!(after.stdout, before.stdout);
    assert!(
        !dir.path().join("cache").exists(),
        "the default folder was used"
    );
}

#[test]
fn via_off_leaves_via_out_and_a_loop_is_still_caught() {
    let origin = echo_headers_origin();
    let porter = Porter::start(&["proxy", "--no-cache", "--via", "off"]);
    let response = proxy_get(porter.addr, &origin.url("/"), &[]);
    assert_eq!(response.status, 200);
    assert!(response.header("via").is_none());
    let seen = response.text().to_ascii_lowercase();
    assert!(!seen.contains("via:"), "{seen}");
    let mark = format!("porter-{}-{}", porter.child.id(), porter.addr.port());
    assert!(seen.contains(&format!("porter-hop: {mark}")), "{seen}");
    // The request coming round again carries the mark: a forwarding loop, 508.
    let again = proxy_get(porter.addr, &origin.url("/"), &[("Porter-Hop", &mark)]);
    assert_eq!(again.status, 508);
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/porter.service"),
    )
    .unwrap();
    for line in [
        "DynamicUser=yes",
        "StateDirectory=porter",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
        // Found on systemd's search path: /usr/local/bin (the README) or /usr/bin (the .deb).
        "ExecStart=porter proxy ",
    ] {
        assert!(unit.contains(line), "{line:?} missing from the unit");
    }
    if require_tool(&["systemd-analyze"], "systemd").is_none() {
        // The unit was still read and checked above.
        return;
    }
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze runs");
    assert!(found.status.success());
    // `verify` checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("porter.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=porter ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_porter")),
        ),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    assert!(
        !String::from_utf8_lossy(&verify.stderr).contains("porter.service"),
        "systemd-analyze warns: {verify:?}"
    );
}

#[test]
fn reload_applies_new_refresh_rules_to_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    // No freshness and no validators: nothing to cache, unless a --refresh rule says otherwise.
    let origin = Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[("Content-Type", "text/plain")]),
            b"pkg".to_vec(),
        )
    });
    let base = format!(
        "cache-dir = {:?}\n",
        dir.path().join("cache").to_str().unwrap()
    );
    write_config(&config, &base);
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    let url = origin.url("/pool/a.deb");
    let x_cache = || {
        proxy_get(porter.addr, &url, &[])
            .header("x-cache")
            .map(str::to_string)
    };
    assert_eq!(x_cache().as_deref(), Some("MISS"));
    assert_eq!(x_cache().as_deref(), Some("MISS"));
    reload(
        &porter,
        &config,
        &format!("{base}refresh = [\"\\\\.deb$=1h\"]\n"),
    );
    assert_eq!(x_cache().as_deref(), Some("MISS"));
    assert_eq!(x_cache().as_deref(), Some("HIT"), "{}", porter.logs());
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// Waits for `text` in the proxy's log (at most 10 s).
fn logged(porter: &Porter, text: &str) -> bool {
    eventually(Duration::from_secs(10), || porter.logs().contains(text))
}

#[test]
fn regression_a_fifo_in_place_of_the_config_file_does_not_jam_reloads_or_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    write_config(&config, "no-cache = true\n");
    let mut porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    std::fs::remove_file(&config).unwrap();
    mkfifo(&config);
    signal(&porter, "HUP");
    assert!(
        logged(&porter, "is a FIFO, not a regular file"),
        "{}",
        porter.logs()
    );
    assert!(logged(&porter, "reload refused"), "{}", porter.logs());
    // Signals still work: SIGUSR1, then a reload once the file is a file again.
    signal(&porter, "USR1");
    assert!(logged(&porter, "SIGUSR1: reopening"), "{}", porter.logs());
    std::fs::remove_file(&config).unwrap();
    write_config(&config, "no-cache = true\ndeny-host = [\"blocked.test\"]\n");
    signal(&porter, "HUP");
    assert!(
        logged(&porter, "configuration reloaded"),
        "{}",
        porter.logs()
    );
    let denied = proxy_get(porter.addr, "http://blocked.test/", &[]);
    assert_eq!(denied.status, 403);
    let status = porter.terminate().expect("SIGTERM ends the proxy");
    assert!(status.success(), "{status:?}");
}

#[test]
fn regression_a_reload_that_blocks_does_not_keep_sigterm_from_ending_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    write_config(&config, "no-cache = true\n");
    let mut porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    // An access log that is a FIFO nobody reads: opening it for writing blocks the reload.
    let fifo = dir.path().join("access.fifo");
    mkfifo(&fifo);
    write_config(
        &config,
        &format!(
            "no-cache = true\naccess-log = {:?}\n",
            fifo.to_str().unwrap()
        ),
    );
    // The first reload blocks; of the next two, one waits in the channel and one is folded into it.
    for taken in 1..=3 {
        signal(&porter, "HUP");
        assert!(
            eventually(Duration::from_secs(10), || porter
                .logs()
                .matches("SIGHUP: reloading")
                .count()
                >= taken),
            "{}",
            porter.logs()
        );
    }
    assert!(
        logged(&porter, "a reload is still running"),
        "{}",
        porter.logs()
    );
    signal(&porter, "USR1");
    assert!(logged(&porter, "SIGUSR1: reopening"), "{}", porter.logs());
    let status = porter.terminate().expect("SIGTERM ends the proxy");
    assert!(status.success(), "{status:?}");
}

#[test]
fn regression_a_fifo_given_as_the_config_file_at_start_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("porter.toml");
    mkfifo(&fifo);
    // run_porter kills a run that hangs and fails the test.
    let run = run_porter(
        &[
            "proxy",
            "--config",
            fifo.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
        &[],
        None,
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "config file {} is a FIFO, not a regular file",
            fifo.display()
        )),
        "{run:?}"
    );
}
