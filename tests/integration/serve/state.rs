//! What `porter serve` keeps to itself: its state files and dotfiles (404, however asked for), the
//! visitor's fields no shared cache may store, and `/getlogs` over a large log in flat memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::symlink;
use std::time::Duration;

use super::*;

/// `porter serve` on its defaults, started inside the served folder (`--root .`, `cookies.json`
/// and `server.log` beside the files), as a new user runs it.
fn serve_in_its_own_folder(root: &Path, extra: &[&str]) -> Porter {
    let mut args = vec!["serve"];
    args.extend_from_slice(extra);
    Porter::start_in(&args, Some(root))
}

#[test]
fn state_files_and_dotfiles_are_404_with_the_defaults_in_the_served_folder() {
    let site = Site::new();
    let root = site.root();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), "[remote]\n").unwrap();
    std::fs::write(root.join(".env"), "TOKEN=1\n").unwrap();
    let porter = serve_in_its_own_folder(&root, &["--faults", "none"]);
    // A visitor and an event, so both state files hold something worth stealing.
    let first = get(porter.addr, "/getbalance", &[]);
    assert!(set_cookie_id(&first).is_some());
    for sibling in [
        ".cookies.json.tmp-99999",
        "cookies.json.corrupt-1700000000",
        "server.log.1",
    ] {
        std::fs::write(root.join(sibling), "state").unwrap();
    }
    symlink("cookies.json", root.join("visitors.json")).unwrap();
    assert!(eventually(Duration::from_secs(10), || root
        .join("cookies.json")
        .exists()));
    for target in [
        "/cookies.json",
        "/server.log",
        "/.cookies.json.tmp-99999",
        "/cookies.json.corrupt-1700000000",
        "/server.log.1",
        "/visitors.json",
        "/%63ookies.json",
        "/sub/../cookies.json",
        "/.git/config",
        "/%2egit/config",
        "/.git/",
        "/.env",
    ] {
        let response = get(porter.addr, target, &[]);
        assert_eq!(response.status, 404, "{target}");
        assert!(!response.text().contains("TOKEN"), "{target}");
    }
    let listing = get(porter.addr, "/list/../", &[]).text();
    let index = get(porter.addr, "/", &[]);
    assert_eq!(index.status, 200);
    for name in [
        "cookies.json",
        "server.log",
        ".git",
        ".env",
        "visitors.json",
    ] {
        assert!(!listing.contains(name), "{name} listed: {listing}");
    }
    assert!(
        porter.logs().contains("is inside --root"),
        "a warning at start: {}",
        porter.logs()
    );
}

#[test]
fn allow_dotfiles_serves_dotfiles_but_never_the_state_files() {
    let site = Site::new();
    let root = site.root();
    std::fs::create_dir_all(root.join(".well-known")).unwrap();
    std::fs::write(root.join(".well-known/security.txt"), "Contact: x\n").unwrap();
    let porter = serve_in_its_own_folder(&root, &["--allow-dotfiles"]);
    get(porter.addr, "/", &[]);
    std::fs::write(root.join(".cookies.json.tmp-1"), "state").unwrap();
    assert_eq!(
        get(porter.addr, "/.well-known/security.txt", &[]).status,
        200
    );
    for target in ["/cookies.json", "/.cookies.json.tmp-1", "/server.log"] {
        assert_eq!(get(porter.addr, target, &[]).status, 404, "{target}");
    }
    // State kept outside the root draws no warning.
    let elsewhere = site.serve(&[]);
    assert!(!elsewhere.logs().contains("is inside --root"));
}

#[test]
fn regression_a_returning_visitors_count_is_never_stored_by_a_shared_cache() {
    let site = Site::new();
    let serve = site.serve(&[]);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let proxy = Porter::start(&["proxy", "--cache-dir", path_str(&cache)]);
    let url = format!("http://{}/hello.txt", serve.addr);
    let direct = get(serve.addr, "/", &[]);
    let cookie = format!("porter_visitor={}", set_cookie_id(&direct).unwrap());
    for _ in 0..4 {
        get(serve.addr, "/", &[("Cookie", &cookie)]);
    }
    let returning = proxy_get(proxy.addr, &url, &[("Cookie", &cookie)]);
    assert_eq!(visits(&returning), Some(6));
    let cache_control = returning.header("cache-control").unwrap_or_default();
    assert!(
        cache_control.contains("no-cache=\"Set-Cookie, X-Visit-Count\""),
        "{cache_control}"
    );
    let stranger = proxy_get(proxy.addr, &url, &[]);
    assert_eq!(stranger.status, 200);
    assert_ne!(visits(&stranger), Some(6), "another visitor's count");
    if stranger.header("x-cache") == Some("HIT") {
        assert!(stranger.header("x-visit-count").is_none());
        assert!(stranger.header("set-cookie").is_none());
    }
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Writes an event log of at least `bytes` to `path`; returns how many events it holds.
fn write_event_log(path: &Path, bytes: u64) -> u64 {
    let mut log = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut n = 0u64;
    while written < bytes {
        let line = format!(
            "{{\"timestamp\":\"2026-11-21T20:05:39.602Z\",\"client_ip\":\"127.0.0.1\",\
             \"path\":\"/getbalance?n={n}\",\"outcome\":\"200\"}}\n"
        );
        log.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        n += 1;
    }
    log.flush().unwrap();
    n
}

#[test]
fn getlogs_streams_a_100_mb_log_in_flat_memory() {
    let site = Site::new();
    let n = write_event_log(&site.events(), 100 << 20);
    let porter = site.serve(&["--event-log-max", "1GiB", "--faults", "none"]);
    let pid = porter.child.id();
    get(porter.addr, "/hello.txt", &[]);
    let before = peak_rss_kib(pid);

    let newest: Vec<serde_json::Value> =
        serde_json::from_slice(&get(porter.addr, "/getlogs?limit=3", &[]).body).unwrap();
    let paths: Vec<String> = newest.iter().map(|e| e["path"].to_string()).collect();
    let want: Vec<String> = (n - 3..n)
        .map(|i| format!("\"/getbalance?n={i}\""))
        .collect();
    assert_eq!(paths, want);

    let readers: Vec<_> = (0..3)
        .map(|_| {
            let addr = porter.addr;
            std::thread::spawn(move || {
                let mut stream = connect(addr);
                stream
                    .write_all(b"GET /getlogs HTTP/1.0\r\nHost: t\r\n\r\n")
                    .unwrap();
                let mut reader = BufReader::with_capacity(64 * 1024, stream);
                let mut line = Vec::new();
                let (mut bytes, mut lines) = (0u64, 0u64);
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).unwrap() == 0 {
                        break;
                    }
                    bytes += line.len() as u64;
                    lines += u64::from(line.starts_with(b"{"));
                }
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest).unwrap();
                (bytes, lines)
            })
        })
        .collect();
    for reader in readers {
        let (bytes, lines) = reader.join().unwrap();
        assert!(bytes > 100 << 20, "{bytes}");
        assert_eq!(lines, n);
    }
    let after = peak_rss_kib(pid);
    assert!(
        after < before + 16 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB serving three 100 MB /getlogs"
    );
    eprintln!(
        "porter serve peak RSS: {before} KiB before, {after} KiB after three 100 MB /getlogs"
    );
}

#[test]
fn event_log_rotates_at_event_log_max_and_long_targets_are_cut() {
    let site = Site::new();
    let porter = site.serve(&["--event-log-max", "4KiB", "--faults", "none"]);
    let long = format!("/getbalance?q={}", "a".repeat(6 * 1024));
    for _ in 0..20 {
        assert_eq!(get(porter.addr, &long, &[]).status, 200);
    }
    let current = std::fs::metadata(site.events()).unwrap().len();
    let mut rotated = site.events().into_os_string();
    rotated.push(".1");
    let older = std::fs::metadata(&rotated).unwrap().len();
    assert!(current <= 4096 && older <= 4096, "{current} {older}");
    let events: Vec<serde_json::Value> =
        serde_json::from_slice(&get(porter.addr, "/getlogs", &[]).body).unwrap();
    assert!(events.len() >= 6, "both files are read: {}", events.len());
    let path = events[0]["path"].as_str().unwrap();
    assert!(path.len() < 600 && path.ends_with("..."), "{}", path.len());
}

#[test]
fn regression_a_fast_reader_of_a_long_getlogs_does_not_hold_up_the_worker_it_shares() {
    let site = Site::new();
    write_event_log(&site.events(), 32 << 20);
    let porter = site.serve(&[
        "--event-log-max",
        "1GiB",
        "--faults",
        "none",
        "--workers",
        "1",
    ]);
    let (began, ended) = (
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    // Reads the whole export as fast as it comes, so the server's writes never wait for room.
    let reader = {
        let (addr, began, ended) = (porter.addr, began.clone(), ended.clone());
        std::thread::spawn(move || {
            let mut stream = connect(addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            stream
                .write_all(b"GET /getlogs HTTP/1.0\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n as u64;
                began.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            ended.store(true, std::sync::atomic::Ordering::SeqCst);
            total
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !began.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The only worker is streaming the export; another client's request is answered meanwhile.
    let hello = get(porter.addr, "/hello.txt", &[]);
    assert_eq!(hello.status, 200);
    assert!(
        !ended.load(std::sync::atomic::Ordering::SeqCst),
        "/hello.txt was answered only once the /getlogs export had ended"
    );
    assert!(reader.join().unwrap() > 32 << 20);
}
