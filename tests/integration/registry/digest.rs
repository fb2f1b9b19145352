//! The content-addressed store's own rules against plain origins: a body is stored only under its
//! own digest, one object answers every URL naming it (apt's by-hash files from two suites, a
//! `--digest-url` rule), and anonymous requests for an object first fetched anonymously need no
//! round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{digest_of, metric};
use crate::util::{Origin, Porter, proxy_get};

fn porter_with(extra: &[&str]) -> (tempfile::TempDir, Porter) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut args = vec!["proxy", "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    let porter = Porter::start(&args);
    (dir, porter)
}

#[test]
fn regression_a_blob_whose_bytes_differ_from_its_digest_is_never_stored_or_served() {
    let good = b"the layer the manifest names".to_vec();
    let digest = digest_of(&good);
    let honest = Arc::new(AtomicBool::new(false));
    let (answer, serves) = (good.clone(), Arc::clone(&honest));
    let origin = Origin::start(move |_, _, _| {
        let body = if serves.load(Ordering::SeqCst) {
            answer.clone()
        } else {
            b"a poisoned layer of another digest".to_vec()
        };
        (200, vec![], body)
    });
    let (_dir, porter) = porter_with(&[]);
    let url = origin.url(&format!("/v2/library/app/blobs/{digest}"));
    for round in 1..=2 {
        let response = proxy_get(porter.addr, &url, &[]);
        assert_eq!(response.status, 200);
        assert_ne!(response.body, good);
        assert_eq!(origin.hits(), round, "nothing was stored to serve");
    }
    assert_eq!(metric(porter.addr, "porter_digest_mismatches_total"), 2);
    assert_eq!(metric(porter.addr, "porter_digest_stored_total"), 0);
    honest.store(true, Ordering::SeqCst);
    assert_eq!(proxy_get(porter.addr, &url, &[]).body, good);
    let hit = proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        (hit.status, hit.body == good, origin.hits()),
        (200, true, 3)
    );
    assert_eq!(
        hit.header("cache-status"),
        Some("porter; hit; detail=digest-hit")
    );
    assert_eq!(hit.header("docker-content-digest"), Some(digest.as_str()));
}

#[test]
fn apt_by_hash_files_of_two_suites_are_one_object() {
    let index = b"Package: porter\nVersion: 1\n".to_vec();
    let hex = digest_of(&index)[7..].to_string();
    let body = index.clone();
    let origin = Origin::start(move |_, _, _| (200, vec![], body.clone()));
    let (_dir, porter) = porter_with(&[]);
    let first = origin.url(&format!(
        "/debian/dists/stable/main/binary-amd64/by-hash/SHA256/{hex}"
    ));
    let second = origin.url(&format!(
        "/debian/dists/testing/main/binary-amd64/by-hash/SHA256/{hex}"
    ));
    assert_eq!(proxy_get(porter.addr, &first, &[]).body, index);
    let hit = proxy_get(porter.addr, &second, &[]);
    assert_eq!((hit.body == index, origin.hits()), (true, 1));
    assert_eq!(metric(porter.addr, "porter_digest_stored_total"), 1);
}

#[test]
fn a_digest_url_rule_stores_what_it_matches_by_digest() {
    let artifact = vec![42u8; 50_000];
    let hex = digest_of(&artifact)[7..].to_string();
    let body = artifact.clone();
    let origin = Origin::start(move |_, _, _| (200, vec![], body.clone()));
    let rule = r"^http://[^/]+/cas/(?P<sha256>[0-9a-f]{64})/";
    let (_dir, porter) = porter_with(&["--digest-url", rule]);
    let a = origin.url(&format!("/cas/{hex}/tool-linux.tar"));
    let b = origin.url(&format!("/cas/{hex}/tool-copy.tar"));
    assert_eq!(proxy_get(porter.addr, &a, &[]).body, artifact);
    assert_eq!(proxy_get(porter.addr, &b, &[]).body, artifact);
    assert_eq!(origin.hits(), 1);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["proxy", "--digest-url", "^/cas/(.*)$", "--check"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("capture named sha256"));
}

/// A push asks with HEAD whether the repository already holds a blob, and skips the upload when
/// it does. A stored object (here from another repository, fetched anonymously) must not answer
/// that: the registry does, or the push skips a blob the repository lacks and its manifest is
/// refused.
#[test]
fn regression_a_head_for_a_stored_blob_is_answered_by_the_registry() {
    let layer = b"a layer only team/app holds".to_vec();
    let digest = digest_of(&layer);
    let body = layer.clone();
    let origin = Origin::start(move |_, path, _| match path.starts_with("/v2/team/app/") {
        true => (200, vec![], body.clone()),
        false => (
            404,
            vec![],
            b"{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}".to_vec(),
        ),
    });
    let (_dir, porter) = porter_with(&[]);
    let stored = origin.url(&format!("/v2/team/app/blobs/{digest}"));
    assert_eq!(proxy_get(porter.addr, &stored, &[]).body, layer);
    let other = format!("/v2/team/other/blobs/{digest}");
    let head = format!(
        "HEAD {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        origin.url(&other),
        origin.addr
    );
    let answer = crate::util::raw_request(porter.addr, head.as_bytes()).unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(origin.hits(), 2);
}

/// CI jobs that start together pull the same layers together: one fetch per digest, the others
/// wait for it and are served the stored object.
#[test]
fn parallel_pulls_of_one_layer_fetch_it_once() {
    let layer = super::noise(7, 300_000);
    let digest = digest_of(&layer);
    let body = layer.clone();
    let origin = Origin::start(move |_, _, _| {
        // Slow to answer, so the other requests arrive while the first waits for its head.
        std::thread::sleep(std::time::Duration::from_millis(300));
        (200, vec![], body.clone())
    });
    let (_dir, porter) = porter_with(&[]);
    let pulls: Vec<_> = (0..5)
        .map(|i| {
            let url = origin.url(&format!("/v2/team/job{i}/blobs/{digest}"));
            let addr = porter.addr;
            std::thread::spawn(move || proxy_get(addr, &url, &[]))
        })
        .collect();
    for pull in pulls {
        let response = pull.join().unwrap();
        assert_eq!((response.status, response.body.len()), (200, layer.len()));
        assert!(response.body == layer);
    }
    assert_eq!(origin.hits(), 1);
}

/// A redirect target is whatever URL a registry names. A registry of one's own that answers a blob
/// request with a redirect to a popular URL must not make Porter serve the stored blob for that
/// URL: its own host's answer goes to whoever asks for it.
#[test]
fn regression_a_registry_cannot_point_another_url_at_a_stored_blob() {
    let page = Origin::start(|_, _, _| (200, vec![], b"the real download".to_vec()));
    let target = page.url("/downloads/tool.tar");
    let blob = b"bytes the attacker wants served".to_vec();
    let digest = digest_of(&blob);
    let (body, location) = (blob.clone(), target.clone());
    let registry = Origin::start(move |_, _, headers| {
        match crate::util::header_value(headers, "authorization") {
            None => (200, vec![], body.clone()),
            Some(_) => (307, vec![("Location".into(), location.clone())], Vec::new()),
        }
    });
    let (_dir, porter) = porter_with(&[]);
    let blob_url = registry.url(&format!("/v2/evil/blobs/{digest}"));
    assert_eq!(proxy_get(porter.addr, &blob_url, &[]).body, blob);
    // With credentials the registry is asked, answers with the redirect, and the stored blob is
    // served for the blob URL (which names it); the redirect's target is noted.
    let checked = proxy_get(porter.addr, &blob_url, &[("Authorization", "Bearer x")]);
    assert_eq!(checked.body, blob);
    for _ in 0..2 {
        let victim = proxy_get(porter.addr, &target, &[]);
        assert_eq!(victim.text(), "the real download");
    }
}

/// A registry of one's own that says yes to every HEAD must not unlock a blob another registry
/// sent with credentials: only a registry that sent the bytes is asked, any other has to send them.
#[test]
fn regression_a_registry_that_never_sent_a_blob_cannot_grant_it() {
    let private = b"a layer of a private image".to_vec();
    let digest = digest_of(&private);
    let body = private.clone();
    let registry = Origin::start(move |_, _, headers| {
        match crate::util::header_value(headers, "authorization").as_deref() {
            Some("Bearer team") => (200, vec![], body.clone()),
            _ => (
                401,
                vec![("WWW-Authenticate".into(), "Bearer realm=\"x\"".into())],
                vec![],
            ),
        }
    });
    let liar = Origin::start(|method, _, _| match method {
        "HEAD" => (200, vec![], Vec::new()),
        _ => (
            404,
            vec![],
            b"{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}".to_vec(),
        ),
    });
    let (_dir, porter) = porter_with(&[]);
    let team = registry.url(&format!("/v2/team/app/blobs/{digest}"));
    let fetched = proxy_get(porter.addr, &team, &[("Authorization", "Bearer team")]);
    assert_eq!(fetched.body, private);
    let elsewhere = liar.url(&format!("/v2/mine/blobs/{digest}"));
    for headers in [&[("Authorization", "Bearer mine")][..], &[]] {
        let answer = proxy_get(porter.addr, &elsewhere, headers);
        assert_eq!(answer.status, 404, "{headers:?}");
        assert_ne!(answer.body, private);
    }
    // The team's registry still grants its own clients the stored layer.
    let again = proxy_get(porter.addr, &team, &[("Authorization", "Bearer team")]);
    assert_eq!((again.body == private, registry.hits()), (true, 2));
}

/// A layer that two registries hold is stored once; the second registry sends it once to show it
/// holds it, and is asked with HEADs after that.
#[test]
fn a_second_registry_proves_it_holds_a_layer_once() {
    let layer = super::noise(99, 100_000);
    let digest = digest_of(&layer);
    let registries: Vec<Origin> = (0..2)
        .map(|_| {
            let body = layer.clone();
            Origin::start(move |_, _, _| (200, vec![], body.clone()))
        })
        .collect();
    let (_dir, porter) = porter_with(&[]);
    let auth = [("Authorization", "Bearer t")];
    for _ in 0..3 {
        for registry in &registries {
            let url = registry.url(&format!("/v2/base/blobs/{digest}"));
            assert!(proxy_get(porter.addr, &url, &auth).body == layer);
        }
    }
    let gets = |r: &Origin| {
        let requests = r.requests.lock().unwrap();
        requests.iter().filter(|h| h.starts_with("GET ")).count()
    };
    assert_eq!((gets(&registries[0]), gets(&registries[1])), (1, 1));
    assert_eq!((registries[0].hits(), registries[1].hits()), (3, 3));
}

/// `--digest-url` rules are reloaded with the configuration (SIGHUP), as `--refresh` rules are.
#[test]
fn digest_url_rules_apply_after_a_reload() {
    let artifact = vec![5u8; 20_000];
    let hex = digest_of(&artifact)[7..].to_string();
    let body = artifact.clone();
    let origin = Origin::start(move |_, _, _| (200, vec![], body.clone()));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    std::fs::write(&config, "").unwrap();
    let cache = dir.path().join("cache");
    let porter = Porter::start(&[
        "proxy",
        "--config",
        config.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let url = |name: &str| origin.url(&format!("/cas/{hex}/{name}"));
    proxy_get(porter.addr, &url("a"), &[]);
    proxy_get(porter.addr, &url("b"), &[]);
    assert_eq!(origin.hits(), 2, "no rule yet: two URLs, two fetches");
    let rule = r"/cas/(?P<sha256>[0-9a-f]{64})/";
    crate::util::reload(&porter, &config, &format!("digest-url = ['{rule}']\n"));
    assert_eq!(proxy_get(porter.addr, &url("c"), &[]).body, artifact);
    assert_eq!(proxy_get(porter.addr, &url("d"), &[]).body, artifact);
    assert_eq!(origin.hits(), 3);
}

/// `only-if-cached` (RFC 9111 §5.2.1.7) never reaches the origin: a stored object that would need
/// the registry's word on credentials is a 504, an anonymous one is served.
#[test]
fn only_if_cached_never_asks_the_registry() {
    let layer = b"layer for only-if-cached".to_vec();
    let digest = digest_of(&layer);
    let body = layer.clone();
    let origin = Origin::start(move |_, _, _| (200, vec![], body.clone()));
    let (_dir, porter) = porter_with(&[]);
    let url = origin.url(&format!("/v2/a/blobs/{digest}"));
    let only = ("Cache-Control", "only-if-cached");
    assert_eq!(proxy_get(porter.addr, &url, &[only]).status, 504);
    assert_eq!(proxy_get(porter.addr, &url, &[]).body, layer);
    assert_eq!(proxy_get(porter.addr, &url, &[only]).body, layer);
    let with_token = proxy_get(porter.addr, &url, &[only, ("Authorization", "Bearer t")]);
    assert_eq!(with_token.status, 504);
    assert_eq!(origin.hits(), 1);
}
