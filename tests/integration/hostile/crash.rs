//! SIGKILL at awkward moments, then a restart on the same files: the proxy while it is storing large
//! responses (and with entry files damaged while it is down), and the origin server while it keeps
//! saving its visitors. Whatever survives must load, and every later answer must be right.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use porter::http::{Limits, parse};

use crate::util::*;

const ROUNDS: usize = 5;
/// Body size of each object; the origin sends it in slices with pauses, so a kill lands mid-body.
const OBJECT_BYTES: usize = 1 << 20;
const SLICE: usize = 32 * 1024;
/// Fresh objects fetched concurrently in each round.
const FRESH_PER_ROUND: usize = 4;
/// The kill comes once some client has received this much of a fresh object.
const KILL_AFTER_BYTES: usize = 256 * 1024;

/// The body of `path`: bytes that differ by path and by position, so a mix-up cannot go unseen.
fn object(path: &str) -> Vec<u8> {
    let seed = path
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0..OBJECT_BYTES as u32)
        .map(|i| (seed.wrapping_add(i.wrapping_mul(7)).wrapping_add(i >> 9) % 251) as u8)
        .collect()
}

/// An origin that answers every GET with its object, cacheable, in slices with short pauses.
fn slow_object_origin() -> SocketAddr {
    raw_server(|_, mut stream| {
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let path = text.split(' ').nth(1).unwrap_or("/").to_string();
        let body = object(&path);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        for slice in body.chunks(SLICE) {
            if stream.write_all(slice).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
    })
}

/// GETs `url` through the proxy; checks that whatever body arrived is a prefix of the right bytes.
/// Returns (status, body bytes received, X-Cache). `progress` follows the body bytes as they come.
fn fetch(proxy: SocketAddr, url: &str, progress: &AtomicUsize) -> (Option<u16>, usize, String) {
    let Ok(mut stream) = TcpStream::connect(proxy) else {
        return (None, 0, String::new());
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    let expected = object(&path);
    let request = format!("GET {url} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (None, 0, String::new());
    }
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Option<(u16, usize, String)> = None;
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if head.is_none()
            && let Ok(Some((h, len))) = parse::response(&raw, &Limits::default())
        {
            let x_cache = h.headers.get("x-cache").unwrap_or("").to_string();
            head = Some((h.status, len, x_cache));
        }
        if let Some((_, len, _)) = &head {
            progress.fetch_max(raw.len() - len, Ordering::Relaxed);
        }
    }
    let Some((status, len, x_cache)) = head else {
        return (None, 0, String::new());
    };
    let body = &raw[len..];
    if status == 200 {
        assert!(
            body.len() <= expected.len() && body == &expected[..body.len()],
            "{url}: wrong bytes ({x_cache}, {} of {} bytes)",
            body.len(),
            expected.len()
        );
    }
    (Some(status), body.len(), x_cache)
}

/// Entry files in the cache folder (not tmp/).
fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.file_name().len() == 2 && d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Damages entries while the proxy is down: a flipped body byte in one, a cut-off tail in another.
fn damage_some_entries(dir: &Path, round: usize) {
    let files = entry_files(dir);
    if files.len() < 2 {
        return;
    }
    let flip = &files[round % files.len()];
    let mut bytes = std::fs::read(flip).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x55;
    std::fs::write(flip, bytes).unwrap();
    let cut = &files[(round + 1) % files.len()];
    let len = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

/// The number in the start-up scan's "discarded N unfinished writes", once it is logged.
fn discarded(porter: &Porter) -> u64 {
    let mut found = None;
    eventually(Duration::from_secs(20), || {
        found = porter.logs().lines().find_map(|l| {
            let (_, rest) = l.split_once("discarded ")?;
            rest.split(' ').next()?.parse().ok()
        });
        found.is_some()
    });
    found.expect("the cache scan reports what it discarded")
}

#[test]
fn proxy_killed_while_storing_restarts_with_only_correct_entries() {
    let origin = slow_object_origin();
    let cache = tempfile::tempdir().expect("temp dir");
    let dir = cache.path().to_str().unwrap().to_string();
    let mut urls: Vec<String> = Vec::new();
    let unused = AtomicUsize::new(0);
    for round in 0..=ROUNDS {
        let porter = Porter::start(&["proxy", "--cache-dir", &dir]);
        let thrown_away = discarded(&porter);
        if round > 0 {
            assert!(
                thrown_away >= 1,
                "round {round}: the kill left no unfinished write to discard"
            );
        }
        // Every object fetched so far, complete or cut off by a kill or damaged on disk, is right.
        for url in &urls {
            let (status, len, x_cache) = fetch(porter.addr, url, &unused);
            assert_eq!(status, Some(200), "round {round}: {url}");
            assert_eq!(
                len, OBJECT_BYTES,
                "round {round}: {url} ({x_cache}) incomplete"
            );
            assert!(
                x_cache == "HIT" || x_cache == "MISS",
                "round {round}: {url}: X-Cache {x_cache:?}"
            );
        }
        if round == ROUNDS {
            assert!(!porter.logs().contains("panicked"));
            break;
        }
        let fresh: Vec<String> = (0..FRESH_PER_ROUND)
            .map(|i| format!("http://{origin}/obj/{round}-{i}"))
            .collect();
        // Fresh objects (stored as they arrive) and a couple of stored ones (hits) at once; only the
        // fresh ones' progress times the kill, so it lands while their entries are being written.
        let progress = Arc::new(AtomicUsize::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = fresh
            .iter()
            .map(|url| (url.clone(), Arc::clone(&progress)))
            .chain(
                urls.iter()
                    .take(2)
                    .map(|url| (url.clone(), Arc::clone(&hits))),
            )
            .map(|(url, progress)| {
                let proxy = porter.addr;
                thread::spawn(move || fetch(proxy, &url, &progress))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while progress.load(Ordering::Relaxed) < KILL_AFTER_BYTES && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(
            progress.load(Ordering::Relaxed) >= KILL_AFTER_BYTES,
            "round {round}: no body got going"
        );
        let mut porter = porter;
        porter.child.kill().expect("SIGKILL");
        porter.child.wait().expect("reaped");
        for client in clients {
            client.join().expect("a client saw wrong bytes");
        }
        damage_some_entries(cache.path(), round);
        urls.extend(fresh);
    }
}

const VISITORS: usize = 300;

fn serve_flags(site: &crate::serve::Site) -> Porter {
    site.serve(&[
        "--save-every",
        "10ms",
        "--ban-after",
        "0",
        "--new-visitors-per-ip",
        "100000",
        "--special-after",
        "0",
    ])
}

/// One GET of /hello.txt with the visitor's cookie: its visit count, or `None` if the server is gone.
/// Waits up to 10 s until the saved cookies file counts at least `visits` for visitor `id`.
fn wait_until_saved(cookies: &std::path::Path, id: &str, visits: u64) {
    let saved = || -> Option<u64> {
        let text = std::fs::read_to_string(cookies).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["visitors"][id]["visits"].as_u64()
    };
    for _ in 0..1000 {
        if saved().is_some_and(|n| n >= visits) {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("visit {visits} of the tracked visitor was not saved within 10 s");
}

fn visit(addr: SocketAddr, id: &str) -> Option<(u64, bool)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    let request = format!(
        "GET /hello.txt HTTP/1.1\r\nHost: h\r\nCookie: porter_visitor={id}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let response = read_response(&mut std::io::BufReader::new(stream), false).ok()?;
    let count = response.header("x-visit-count")?.parse().ok()?;
    Some((count, response.header("set-cookie").is_some()))
}

#[test]
fn origin_killed_while_saving_visitors_restarts_with_a_loadable_file() {
    let site = crate::serve::Site::new();
    // Round 0: many visitors (a file that takes a moment to write), saved by a clean stop.
    let mut porter = serve_flags(&site);
    let ids: Vec<String> = (0..VISITORS)
        .map(|i| {
            let response = crate::serve::get(porter.addr, "/hello.txt", &[]);
            crate::serve::set_cookie_id(&response)
                .unwrap_or_else(|| panic!("visitor {i}: no cookie"))
        })
        .collect();
    let tracked = ids[0].clone();
    assert!(porter.terminate().is_some_and(|s| s.success()));

    // Each round restarts on what the last kill left, checks it, visits until a kill at a varying
    // moment (visits keep the store dirty, so it is saved every 10 ms); the last round only checks.
    let (mut floor, mut seen) = (1u64, 1u64);
    for round in 1..=5u64 {
        let mut porter = serve_flags(&site);
        let logs = porter.logs();
        assert!(
            logs.contains(&format!("{VISITORS} visitors loaded")),
            "round {round}: {logs}"
        );
        assert!(
            !logs.contains("not valid"),
            "round {round}: the file was damaged: {logs}"
        );
        let (first, new_cookie) = visit(porter.addr, &tracked).expect("a first visit");
        assert!(!new_cookie, "round {round}: the visitor was forgotten");
        let leftovers: Vec<_> = std::fs::read_dir(site.dir.path())
            .unwrap()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().contains(".tmp-"))
            .filter(|f| {
                !f.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{}", porter.child.id()))
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: unfinished saves left behind: {leftovers:?}"
        );
        // At least what an earlier start saw (that was saved long before its kill), at most every
        // visit made, plus one that may have been counted without its answer arriving.
        assert!(
            first > floor && first <= seen + 2,
            "round {round}: visit {first} after the restart; before the kill {floor}..={seen}"
        );
        floor = first;
        if round == 5 {
            break;
        }
        // The kill must come after at least one save of this round: on a loaded machine an fsync can
        // take longer than the kill delay, so wait (bounded) until the file holds the first visit.
        wait_until_saved(&site.cookies(), &tracked, first);
        let last_seen = Arc::new(AtomicU64::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let visitor = {
            let (addr, id) = (porter.addr, tracked.clone());
            let (last_seen, stop) = (Arc::clone(&last_seen), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match visit(addr, &id) {
                        Some((count, _)) => last_seen.fetch_max(count, Ordering::Relaxed),
                        None => break,
                    };
                }
            })
        };
        thread::sleep(Duration::from_millis(40 + 37 * round));
        porter.child.kill().expect("SIGKILL");
        porter.child.wait().expect("reaped");
        stop.store(true, Ordering::Relaxed);
        visitor.join().expect("visitor thread");
        assert!(!porter.logs().contains("panicked"));
        seen = last_seen.load(Ordering::Relaxed);
    }
    let aside: Vec<String> = file_names(site.dir.path())
        .into_iter()
        .filter(|n| n.contains("corrupt"))
        .collect();
    assert!(
        aside.is_empty(),
        "a cookies file was found corrupt: {aside:?}"
    );
}
