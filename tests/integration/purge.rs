//! `porter cache purge|clear` while a proxy runs on the same folder: what they remove is never served
//! again, from disk or memory, and the proxy's status page and metrics stop counting it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::util::*;

fn cached_proxy(dir: &Path) -> Porter {
    Porter::start(&["proxy", "--cache-dir", dir.to_str().unwrap()])
}

fn cache_command(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["cache", "--cache-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run_porter(&all, dir, &[], None)
}

/// The proxy's own count of entries, from its status page and from `/metrics`.
fn counted_entries(porter: &Porter) -> (String, String) {
    let page = |path: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n");
        raw_request(porter.addr, raw.as_bytes()).unwrap().text()
    };
    let status = page("/");
    let marker = "id=\"cache-entries\">";
    let start = status
        .find(marker)
        .unwrap_or_else(|| panic!("no entries row in {status}"))
        + marker.len();
    let row = status[start..]
        .split('<')
        .next()
        .unwrap_or_default()
        .to_string();
    let metrics = page("/metrics");
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with("porter_cache_entries "))
        .unwrap_or_else(|| panic!("no entries gauge in {metrics}"))
        .to_string();
    (row, gauge)
}

fn small_origin() -> Origin {
    Origin::start(|_, path, _| {
        (
            200,
            hdrs(&[("Cache-Control", "max-age=300")]),
            format!("body of {path}").into_bytes(),
        )
    })
}

#[test]
fn purge_from_the_command_line_reaches_the_running_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let origin = small_origin();
    let porter = cached_proxy(dir.path());
    let (a, b) = (origin.url("/a"), origin.url("/b"));
    for url in [&a, &b] {
        assert_eq!(
            proxy_get(porter.addr, url, &[]).header("x-cache"),
            Some("MISS")
        );
    }
    // Two hits: the second comes from the memory tier, which is what used to survive a purge.
    for _ in 0..2 {
        assert_eq!(
            proxy_get(porter.addr, &a, &[]).header("x-cache"),
            Some("HIT")
        );
    }
    assert_eq!(
        counted_entries(&porter),
        ("2".to_string(), "porter_cache_entries 2".to_string())
    );
    let purged = cache_command(dir.path(), &["purge", &a]);
    assert!(purged.ok(), "{purged:?}");
    assert!(
        purged.stdout.contains("the running proxy forgot them"),
        "{purged:?}"
    );
    let hits_before = origin.hits();
    let after = proxy_get(porter.addr, &a, &[]);
    assert_eq!(
        (after.header("x-cache"), after.text().as_str()),
        (Some("MISS"), "body of /a")
    );
    assert_eq!(
        origin.hits(),
        hits_before + 1,
        "the purged entry went to the origin"
    );
    // The other entry is untouched, and the count went down by one before the refetch stored /a again.
    assert_eq!(
        proxy_get(porter.addr, &b, &[]).header("x-cache"),
        Some("HIT")
    );
    assert_eq!(counted_entries(&porter).1, "porter_cache_entries 2");
    let purged = cache_command(dir.path(), &["purge", &b]);
    assert!(purged.ok(), "{purged:?}");
    assert_eq!(counted_entries(&porter).1, "porter_cache_entries 1");
}

#[test]
fn clear_from_the_command_line_empties_the_running_proxys_memory_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let origin = small_origin();
    let porter = cached_proxy(dir.path());
    let urls: Vec<String> = (0..5).map(|i| origin.url(&format!("/{i}"))).collect();
    for url in &urls {
        proxy_get(porter.addr, url, &[]);
        assert_eq!(
            proxy_get(porter.addr, url, &[]).header("x-cache"),
            Some("HIT")
        );
        assert_eq!(
            proxy_get(porter.addr, url, &[]).header("x-cache"),
            Some("HIT")
        );
    }
    assert_eq!(counted_entries(&porter).1, "porter_cache_entries 5");
    let cleared = cache_command(dir.path(), &["clear"]);
    assert!(
        cleared.ok() && cleared.stdout.contains("the running proxy forgot them"),
        "{cleared:?}"
    );
    assert_eq!(
        counted_entries(&porter),
        ("0".to_string(), "porter_cache_entries 0".to_string())
    );
    let hits_before = origin.hits();
    for url in &urls {
        assert_eq!(
            proxy_get(porter.addr, url, &[]).header("x-cache"),
            Some("MISS"),
            "{url}"
        );
    }
    assert_eq!(origin.hits(), hits_before + urls.len());
    let stats = cache_command(dir.path(), &["stats"]);
    assert!(stats.stdout.contains("entries:  5"), "{stats:?}");
}

#[test]
fn a_killed_proxys_socket_does_not_stop_purge() {
    let dir = tempfile::tempdir().unwrap();
    let origin = small_origin();
    {
        let porter = cached_proxy(dir.path());
        proxy_get(porter.addr, &origin.url("/a"), &[]);
        // Dropping kills it without a chance to remove its socket.
    }
    let purged = cache_command(dir.path(), &["purge", &origin.url("/a")]);
    assert!(purged.ok(), "{purged:?}");
    assert!(!purged.stdout.contains("forgot"), "{purged:?}");
    assert_eq!(
        file_names(&dir.path().join("control")),
        Vec::<String>::new()
    );
}

#[test]
fn a_proxy_stopped_cleanly_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut porter = cached_proxy(dir.path());
    let control = dir.path().join("control");
    // The socket comes up with the cache, just after the listening line, with its lock file.
    let pid = porter.child.id();
    assert!(eventually(Duration::from_secs(5), || file_names(&control)
        == [format!("{pid}.lock"), format!("{pid}.sock")]));
    assert!(porter.terminate().is_some_and(|s| s.success()));
    assert_eq!(file_names(&control), Vec::<String>::new());
}

/// Sends `line` on the running proxy's control socket and returns its answer.
fn control_answer(dir: &Path, porter: &Porter, line: &[u8]) -> String {
    let socket = dir
        .join("control")
        .join(format!("{}.sock", porter.child.id()));
    assert!(eventually(Duration::from_secs(5), || socket.exists()));
    let mut stream = UnixStream::connect(&socket).expect("the control socket answers");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(line).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn regression_a_control_line_cut_inside_a_utf8_character_does_not_stop_purge() {
    let dir = tempfile::tempdir().unwrap();
    let origin = small_origin();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/a");
    proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        proxy_get(porter.addr, &url, &[]).header("x-cache"),
        Some("HIT")
    );
    // 64 bytes of "key" with a two-byte character across the folder/file split (slicing it panicked
    // the control thread), then a character cut by the line's end, then a line far too long.
    let split = format!("forget a\u{e9}{}\n", "0".repeat(61));
    let mut cut = b"forget ab".to_vec();
    cut.extend_from_slice(&"\u{e9}".as_bytes()[..1]);
    cut.push(b'\n');
    let long = vec![b'f'; 64 * 1024];
    for line in [split.as_bytes(), &cut, &long] {
        let answer = control_answer(dir.path(), &porter, line);
        assert!(answer.starts_with("error: "), "{answer:?}");
    }
    let purged = cache_command(dir.path(), &["purge", &url]);
    assert!(
        purged.ok() && purged.stdout.contains("the running proxy forgot them"),
        "{purged:?}"
    );
    let hits = origin.hits();
    assert_eq!(
        proxy_get(porter.addr, &url, &[]).header("x-cache"),
        Some("MISS")
    );
    assert_eq!(origin.hits(), hits + 1);
}

#[test]
fn regression_purge_fails_when_a_live_proxys_socket_refuses_and_leaves_it_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let origin = small_origin();
    {
        let porter = cached_proxy(dir.path());
        proxy_get(porter.addr, &origin.url("/a"), &[]);
    }
    // A proxy that is alive (this test holds its lock) but whose socket refuses connections.
    let socket = dir.path().join("control/4000000.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let lock = std::fs::File::create(dir.path().join("control/4000000.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let purged = cache_command(dir.path(), &["purge", &origin.url("/a")]);
    assert!(!purged.ok(), "{purged:?}");
    assert!(
        purged.stderr.contains("did not confirm") && !purged.stdout.contains("purged"),
        "{purged:?}"
    );
    assert!(socket.exists(), "a live proxy's socket is never removed");
    // Once that proxy is gone, the same command cleans up after it.
    drop(lock);
    proxy_get(cached_proxy(dir.path()).addr, &origin.url("/a"), &[]);
    let purged = cache_command(dir.path(), &["purge", &origin.url("/a")]);
    assert!(purged.ok(), "{purged:?}");
    assert!(!socket.exists());
}
