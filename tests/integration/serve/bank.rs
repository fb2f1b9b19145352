//! The unreliable bank: the seeded fault mix, timeouts that free their worker, /getlogs and the
//! event log across a restart, and flags refused at start.

use std::io::{ErrorKind, Write};
use std::process::Command;

use super::*;

/// How a /getbalance request ended, as the client saw it.
fn balance_outcome(addr: SocketAddr) -> String {
    match request(addr, "GET", "/getbalance", &[]) {
        Ok(response) => {
            if response.status == 200 {
                assert!(response.text().contains("Account balance"));
            }
            response.status.to_string()
        }
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => "timeout".to_string(),
        Err(e) => panic!("/getbalance: {e}"),
    }
}

fn seeded_run(site: &Site, seed: &str) -> (Vec<String>, Vec<String>) {
    let porter = site.serve(&["--seed", seed, "--fault-delay", "200ms"]);
    let seen: Vec<String> = (0..40).map(|_| balance_outcome(porter.addr)).collect();
    let logs = get(porter.addr, "/getlogs?limit=40", &[]);
    let events: Vec<serde_json::Value> = serde_json::from_slice(&logs.body).unwrap();
    let logged = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    (seen, logged)
}

#[test]
fn seeded_fault_mix_is_reproducible() {
    let (first, logged) = seeded_run(&Site::new(), "2024");
    let count = |kind: &str| first.iter().filter(|o| *o == kind).count();
    let counts = [count("200"), count("403"), count("500"), count("timeout")];
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 40, "{first:?}");
    assert_eq!(logged, first, "the event log records what clients saw");
    let (again, _) = seeded_run(&Site::new(), "2024");
    assert_eq!(again, first, "same seed, same sequence");
}

#[test]
fn timeout_fault_does_not_hold_a_worker() {
    let site = Site::new();
    let porter = site.serve(&[
        "--workers",
        "1",
        "--faults",
        "timeout=1",
        "--fault-delay",
        "60s",
    ]);
    // Held connections get no response; the single worker is free for the next client meanwhile.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(porter.addr);
        stream
            .write_all(b"GET /getbalance HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        held.push(stream);
        assert_eq!(get(porter.addr, "/hello.txt", &[]).status, 200);
    }
    let logs = get(porter.addr, "/getlogs", &[]);
    let events: Vec<serde_json::Value> = serde_json::from_slice(&logs.body).unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["outcome"] == "timeout"));
}

#[test]
fn getlogs_returns_events_and_the_log_survives_a_restart() {
    let site = Site::new();
    let mut porter = site.serve(&["--faults", "none"]);
    for n in 0..5 {
        let response = get(porter.addr, &format!("/getbalance?n={n}"), &[]);
        assert_eq!(response.status, 200);
    }
    let all = get(porter.addr, "/getlogs", &[]);
    assert_eq!(all.header("content-type"), Some("application/json"));
    let events: Vec<serde_json::Value> = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(events.len(), 5);
    let event = &events[0];
    assert_eq!(event["path"], "/getbalance?n=0");
    assert_eq!(event["client_ip"], "127.0.0.1");
    assert_eq!(event["outcome"], "200");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    let newest = get(porter.addr, "/getlogs?limit=2", &[]);
    let newest: Vec<serde_json::Value> = serde_json::from_slice(&newest.body).unwrap();
    let paths: Vec<&str> = newest.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/getbalance?n=3", "/getbalance?n=4"]);
    assert_eq!(get(porter.addr, "/getlogs?limit=lots", &[]).status, 400);

    assert!(porter.terminate().is_some_and(|s| s.success()));
    let porter = site.serve(&["--faults", "none"]);
    get(porter.addr, "/getbalance?n=5", &[]);
    let all = get(porter.addr, "/getlogs", &[]);
    let events: Vec<serde_json::Value> = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(events.len(), 6);
    assert_eq!(events[5]["path"], "/getbalance?n=5");
}

#[test]
fn bad_flags_are_rejected_with_a_clear_error() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_porter"))
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .expect("porter runs")
    };
    let over = run(&["--faults", "timeout=0.6,403=0.5"]);
    assert!(!over.status.success());
    let stderr = String::from_utf8_lossy(&over.stderr);
    assert!(
        stderr.contains("fault shares sum to 1.1, more than 1"),
        "{stderr}"
    );
    let unknown = run(&["--faults", "404=0.1"]);
    assert!(!unknown.status.success());
    let missing = run(&["--root", "/nonexistent/porter-root"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("cannot serve --root"), "{stderr}");
    let site = Site::new();
    let unwritable = site.dir.path().join("no/such/folder/cookies.json");
    let root = site.root();
    let cookies = run(&[
        "--root",
        path_str(&root),
        "--cookies",
        path_str(&unwritable),
    ]);
    assert!(!cookies.status.success());
    let stderr = String::from_utf8_lossy(&cookies.stderr);
    assert!(stderr.contains("cannot write cookies file"), "{stderr}");
}
