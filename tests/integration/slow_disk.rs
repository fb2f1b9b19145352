//! A slow disk stalls only the requests that need it (issue 26): cache files are opened, read and
//! written on disk threads while their requests wait in state `disk`, so a memory-tier hit for
//! another client is answered while cold hits wait for the disk.
//!
//! The disk is slowed by `PORTER_DEBUG_DISK_DELAY_MS` (every entry open, create, rename and
//! removal waits that long), a hook only debug builds have, like the stack overflow hook in
//! `runtime.rs`; so these tests run under `cargo test` and skip in a release test build.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{Origin, Porter, eventually, hdrs, proxy_get, raw_request, skip_unless_ci};

/// What each disk operation waits, as the issue's `strace -e inject=openat:delay_enter=200000`.
const DELAY_MS: u64 = 200;
/// Cold hits in flight at once.
const COLD: usize = 20;
/// Bodies of the cold entries: larger than the memory tier takes (a quarter of 256 KiB).
const BIG: usize = 100 * 1024;

/// The connections waiting for the disk, from /metrics.
fn waiting_on_disk(proxy: SocketAddr) -> usize {
    let metrics = raw_request(proxy, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("/metrics answers");
    metrics
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("porter_waiting_connections{state=\"disk\"} "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the disk state is in /metrics")
}

/// The origin of these tests: `/small` is 1 KiB, anything else [`BIG`]; all fresh for an hour.
fn origin() -> Origin {
    Origin::start(|_, path, _| {
        let size = if path == "/small" { 1024 } else { BIG };
        let body = vec![b'x'; size];
        (200, hdrs(&[("Cache-Control", "max-age=3600")]), body)
    })
}

/// `porter proxy` with a memory tier too small for [`BIG`] bodies, its cache in `cache`.
fn proxy_args(cache: &str) -> [&str; 7] {
    [
        "proxy",
        "--cache-dir",
        cache,
        "--memory-cache-size",
        "256KiB",
        "--disk-threads",
        "4",
    ]
}

/// Starts the proxy with every disk operation slowed by [`DELAY_MS`].
fn slowed(args: &[&str]) -> Porter {
    let env = ["env", &format!("PORTER_DEBUG_DISK_DELAY_MS={DELAY_MS}")];
    Porter::start_under(&env, args, None)
}

/// GETs `urls` at once, each on its own connection: status, X-Cache and body length of each.
fn all_at_once(
    proxy: SocketAddr,
    urls: Vec<String>,
) -> Vec<thread::JoinHandle<(u16, String, usize)>> {
    urls.into_iter()
        .map(|url| {
            thread::spawn(move || {
                let response = proxy_get(proxy, &url, &[]);
                let x_cache = response.header("X-Cache").unwrap_or_default().to_string();
                (response.status, x_cache, response.body.len())
            })
        })
        .collect()
}

/// Once requests wait for the disk, times three memory hits of `small`, each taken while requests
/// provably wait for the disk before and after it (a stalled worker makes every one of them wait
/// for at least one slowed operation), and checks the best is within the 50 ms.
fn assert_memory_hits_do_not_wait(proxy: SocketAddr, small: &str) {
    assert!(
        eventually(Duration::from_secs(10), || waiting_on_disk(proxy) > 0),
        "requests wait in state disk"
    );
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let in_flight_before = waiting_on_disk(proxy);
        let started = Instant::now();
        let hit = proxy_get(proxy, small, &[]);
        let took = started.elapsed();
        let in_flight_after = waiting_on_disk(proxy);
        assert_eq!((hit.status, hit.header("X-Cache")), (200, Some("HIT")));
        assert_eq!(hit.body.len(), 1024);
        if in_flight_before > 0 && in_flight_after > 0 {
            best = best.min(took);
        }
        eprintln!(
            "memory hit in {took:?} with {in_flight_before} then {in_flight_after} requests waiting on the disk"
        );
    }
    assert!(
        best != Duration::MAX,
        "no memory hit was taken while others waited for the disk before and after it"
    );
    assert!(
        best < Duration::from_millis(50),
        "a memory hit took {best:?} while others waited for a {DELAY_MS} ms disk"
    );
}

/// Puts `small` in the memory tier: a first hit (or a miss and a hit) reads it from the disk.
fn into_memory(proxy: SocketAddr, small: &str) {
    let first = proxy_get(proxy, small, &[]);
    assert_eq!(first.status, 200);
    for _ in 0..2 {
        let hit = proxy_get(proxy, small, &[]);
        assert_eq!((hit.status, hit.header("X-Cache")), (200, Some("HIT")));
    }
}

/// The bug: cold cache reads ran on the worker, so with every open slowed by 200 ms and 20 cold
/// hits in flight, a memory hit for another client waited for the opens ahead of it on its worker
/// (0.79 s in the measurement, 510 ms here with `--disk-threads 0`). Now the memory hit is
/// answered while the cold hits still wait in state `disk`, well within one slowed open.
#[test]
fn regression_a_slow_disk_does_not_stall_a_memory_hit_for_another_client() {
    if !cfg!(debug_assertions) {
        skip_unless_ci(
            "the slow-disk hook, which only debug builds carry",
            "run the tests in a debug build (cargo test, as .ci/run does)",
        );
        return;
    }
    let origin = origin();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let args = proxy_args(cache.to_str().unwrap());
    let big: Vec<String> = (0..COLD)
        .map(|i| origin.url(&format!("/big/{i}")))
        .collect();
    let small = origin.url("/small");
    // Fill the cache at full speed, then start again slowed, with an empty memory tier.
    {
        let filling = Porter::start(&args);
        for url in big.iter().chain([&small]) {
            assert_eq!(proxy_get(filling.addr, url, &[]).status, 200, "{url}");
        }
    }
    let porter = slowed(&args);
    into_memory(porter.addr, &small);
    let hits_before = origin.hits();
    let cold = all_at_once(porter.addr, big);
    assert_memory_hits_do_not_wait(porter.addr, &small);
    for handle in cold {
        let (status, x_cache, len) = handle.join().unwrap();
        assert_eq!((status, x_cache.as_str(), len), (200, "HIT", BIG));
    }
    assert_eq!(origin.hits(), hits_before, "every cold read was a hit");
}

/// The same for stores: 20 misses, each creating, writing and renaming its entry on the slowed
/// disk, do not hold up a memory hit for another client (timed once every miss has reached the
/// origin, so the waits are the stores'); and each was stored (a hit afterwards).
#[test]
fn regression_a_slow_disk_does_not_stall_a_memory_hit_while_misses_are_stored() {
    if !cfg!(debug_assertions) {
        skip_unless_ci(
            "the slow-disk hook, which only debug builds carry",
            "run the tests in a debug build (cargo test, as .ci/run does)",
        );
        return;
    }
    let origin = origin();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let args = proxy_args(cache.to_str().unwrap());
    let porter = slowed(&args);
    let small = origin.url("/small");
    into_memory(porter.addr, &small);
    let big: Vec<String> = (0..COLD)
        .map(|i| origin.url(&format!("/new/{i}")))
        .collect();
    let fetched_before = origin.hits();
    let misses = all_at_once(porter.addr, big.clone());
    // Once the origin has seen every miss, their lookups are over: what they wait for now is
    // the store (the temporary file's creation, then the rename).
    assert!(
        eventually(Duration::from_secs(20), || origin.hits()
            >= fetched_before + COLD),
        "every miss reached the origin"
    );
    assert_memory_hits_do_not_wait(porter.addr, &small);
    for handle in misses {
        let (status, x_cache, len) = handle.join().unwrap();
        assert_eq!((status, x_cache.as_str(), len), (200, "MISS", BIG));
    }
    for handle in all_at_once(porter.addr, big) {
        let (status, x_cache, len) = handle.join().unwrap();
        assert_eq!((status, x_cache.as_str(), len), (200, "HIT", BIG), "stored");
    }
}
