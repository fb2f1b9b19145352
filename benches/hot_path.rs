//! Micro benchmarks of the per-request work on a cache hit: parse the request head and its target, build the cache key,
//! look the entry up (memory tier and disk), decide freshness, decode a stored entry's head, and
//! serialise the response head. End-to-end runs against Squid and nginx: see docs/benchmarks.md
//! (`benches/side-by-side.sh`) and `benches/rss.sh` for memory.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use porter::cache::entry::{self, ResponseMeta, Stored};
use porter::cache::key::Key;
use porter::cache::policy;
use porter::cache::{Cache, CacheConfig};
use porter::http::{Limits, ResponseHead, parse, write};
use porter::proxy::flow::target::Target;
use std::io::Write;

const REQUEST: &[u8] = b"GET http://127.0.0.1:8080/files/1k.bin HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n\
Proxy-Connection: keep-alive\r\n\r\n";

fn stored_head() -> ResponseHead {
    let mut head = ResponseHead::new(200);
    for (name, value) in [
        ("Server", "nginx/1.22.1"),
        ("Date", "Sat, 21 Nov 2026 19:30:54 GMT"),
        ("Content-Type", "application/octet-stream"),
        ("Last-Modified", "Sat, 21 Nov 2026 19:00:00 GMT"),
        ("ETag", "\"6565a1f0-400\""),
        ("Cache-Control", "max-age=3600"),
        ("Accept-Ranges", "bytes"),
    ] {
        head.headers.append(name, value);
    }
    head
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("hit_path");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    group.bench_function("parse_request_head", |b| {
        b.iter(|| parse::request(black_box(REQUEST), &Limits::default()).unwrap())
    });
    group.throughput(Throughput::Elements(1));
    // A canonical URL takes the hand-written fast path; a non-canonical one (uppercase host) the
    // WHATWG parser, as every URL did before.
    group.bench_function("target_canonical", |b| {
        b.iter(|| Target::parse_absolute(black_box("http://127.0.0.1:8080/files/1k.bin")).unwrap())
    });
    group.bench_function("target_parser", |b| {
        b.iter(|| {
            Target::parse_absolute(black_box("http://Example.COM:8080/files/1k.bin")).unwrap()
        })
    });
    group.bench_function("cache_key", |b| {
        b.iter(|| Key::for_url(black_box("http://127.0.0.1:8080/files/1k.bin")))
    });
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_290_000);
    let stored = Stored::Response(ResponseMeta {
        head: stored_head(),
        request_time: t,
        response_time: t,
        vary_values: Vec::new(),
    });
    let head = entry::encode_head("http://127.0.0.1:8080/files/1k.bin", &stored);
    let mut file = entry::encode_prefix(&head, 1024, 0).to_vec();
    file.extend_from_slice(&head);
    file.extend_from_slice(&[0u8; 1024]);
    let len = file.len() as u64;
    group.bench_function("decode_entry_head", |b| {
        b.iter(|| entry::decode(&mut black_box(&file[..]), len).unwrap())
    });
    // Cache lookups through the public API: the memory tier (a hot hit) and the disk (a cold one).
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::open(&CacheConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 30,
        max_object_size: 1 << 28,
        memory_bytes: 32 << 20,
        disk_threads: porter::cache::diskio::DEFAULT_THREADS,
        refresh: Default::default(),
    })
    .expect("cache");
    let (req, _) = parse::request(REQUEST, &Limits::default())
        .unwrap()
        .unwrap();
    for url in ["http://127.0.0.1:8080/hot", "http://127.0.0.1:8080/cold"] {
        let mut writer = cache
            .writer(url, &req, &stored_head(), t, t)
            .expect("writer");
        writer.write_all(&[7u8; 1024]).unwrap();
        writer.commit().unwrap();
    }
    let mut hot = cache
        .lookup("http://127.0.0.1:8080/hot", &req)
        .expect("stored");
    assert!(cache.prepare("http://127.0.0.1:8080/hot", &mut hot));
    group.bench_function("cache_lookup_memory", |b| {
        b.iter(|| {
            cache
                .lookup(black_box("http://127.0.0.1:8080/hot"), &req)
                .unwrap()
        })
    });
    group.bench_function("cache_lookup_disk", |b| {
        b.iter(|| {
            cache
                .lookup(black_box("http://127.0.0.1:8080/cold"), &req)
                .unwrap()
        })
    });
    let now = t + Duration::from_secs(5);
    group.bench_function("freshness_decision", |b| {
        b.iter(|| policy::decide(black_box(&req), &hot.freshness, now))
    });
    let response = stored_head();
    group.bench_function("write_response_head", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            write::response_head(&mut out, black_box(&response));
            out.len()
        })
    });
    group.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
