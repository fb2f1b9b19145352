//! A registry in the shape Docker Hub, GHCR and ECR have: every request needs a Bearer token from
//! a token endpoint (401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`), and
//! blob requests are answered with `307` to a storage host, with a signed query string that
//! changes every time. skopeo pulls twice through Porter: the second time the storage host sees
//! no request, and a wrong token gets the registry's 401.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Image, access_details, layer_tarball, metric, noise, pulled_blob, skopeo};
use crate::util::{
    Origin, Porter, eventually, header_value, proxy_get, require_test_host, require_tool,
};

const REGISTRY: &str = "auth-registry.porter.test";
const STORAGE: &str = "storage.porter.test";
/// Base64 of `ci:s3cret`, what the token endpoint accepts.
const GOOD_BASIC: &str = "Basic Y2k6czNjcmV0";
const TOKEN: &str = "token-for-ci";

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

fn reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let headers = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    (status, headers, body.to_vec())
}

/// The registry's answer: token challenges, the manifest, and 307s to signed storage URLs.
fn registry_route(
    storage_port: u16,
    manifest: Vec<u8>,
    blobs: Arc<HashMap<String, Vec<u8>>>,
    signatures: Arc<AtomicUsize>,
) -> impl Fn(&str, &str, &[(String, String)]) -> Reply + Send + Sync + 'static {
    move |_method, path, headers| {
        let host = header_value(headers, "host").unwrap_or_default();
        let authorization = header_value(headers, "authorization").unwrap_or_default();
        if let Some(query) = path.strip_prefix("/token?") {
            if authorization != GOOD_BASIC || !query.contains("service=porter-test") {
                return reply(401, &[("Content-Type", "application/json")], b"{}");
            }
            let body =
                format!(r#"{{"token":"{TOKEN}","access_token":"{TOKEN}","expires_in":300}}"#);
            return reply(
                200,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            );
        }
        if authorization != format!("Bearer {TOKEN}") {
            let scope = path
                .strip_prefix("/v2/")
                .and_then(|rest| {
                    rest.split_once("/blobs/")
                        .or(rest.split_once("/manifests/"))
                })
                .map(|(repo, _)| format!(",scope=\"repository:{repo}:pull\""))
                .unwrap_or_default();
            let challenge =
                format!("Bearer realm=\"http://{host}/token\",service=\"porter-test\"{scope}");
            let body =
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            return reply(
                401,
                &[
                    ("WWW-Authenticate", &challenge),
                    ("Content-Type", "application/json"),
                    ("Docker-Distribution-API-Version", "registry/2.0"),
                ],
                body,
            );
        }
        if path == "/v2/" {
            return reply(
                200,
                &[("Docker-Distribution-API-Version", "registry/2.0")],
                b"{}",
            );
        }
        if path == "/v2/team/app/manifests/v1" {
            let digest = super::digest_of(&manifest);
            return reply(
                200,
                &[
                    ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                    ("Docker-Content-Digest", &digest),
                    ("ETag", &format!("\"{digest}\"")),
                ],
                &manifest,
            );
        }
        if let Some(digest) = path.strip_prefix("/v2/team/app/blobs/")
            && blobs.contains_key(digest)
        {
            // A new signature and expiry every time, as S3 and CDNs sign them.
            let n = signatures.fetch_add(1, Ordering::SeqCst);
            let location = format!(
                "http://{STORAGE}:{storage_port}/store/{}?X-Signature=sig{n}&X-Expires={}",
                &digest[7..],
                1_900_000_000 + n
            );
            return reply(307, &[("Location", &location)], b"");
        }
        reply(
            404,
            &[("Content-Type", "application/json")],
            b"{\"errors\":[]}",
        )
    }
}

#[test]
fn skopeo_pulls_a_redirecting_bearer_registry_twice_and_the_second_pull_never_reaches_storage() {
    let Some(skopeo_bin) = require_tool(&["skopeo"], "skopeo") else {
        return;
    };
    let (Some(registry_ip), Some(storage_ip)) =
        (require_test_host(REGISTRY), require_test_host(STORAGE))
    else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let layer = layer_tarball(work.path(), &noise(1724, 768 * 1024));
    let image = Image::write(&work.path().join("image"), layer, "bearer", "v1");
    let mut by_digest = HashMap::new();
    by_digest.insert(image.layer_digest.clone(), image.layer.clone());
    by_digest.insert(image.config_digest.clone(), image.config());
    let blobs = Arc::new(by_digest);

    let served = Arc::clone(&blobs);
    let storage = Origin::start_at(&format!("{storage_ip}:0"), move |_, path, _| {
        let Some((hex_text, query)) = path
            .strip_prefix("/store/")
            .and_then(|rest| rest.split_once('?'))
        else {
            return reply(404, &[], b"");
        };
        match served.get(&format!("sha256:{hex_text}")) {
            Some(body) if query.contains("X-Signature=sig") => {
                reply(200, &[("Content-Type", "application/octet-stream")], body)
            }
            _ => reply(403, &[], b"<Error>SignatureDoesNotMatch</Error>"),
        }
    });
    let signatures = Arc::new(AtomicUsize::new(0));
    let registry = Origin::start_at(
        &format!("{registry_ip}:0"),
        registry_route(
            storage.addr.port(),
            image.manifest.clone(),
            Arc::clone(&blobs),
            Arc::clone(&signatures),
        ),
    );

    let log = work.path().join("access.log");
    let cache = work.path().join("cache");
    let porter = Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
    ]);
    let reference = format!("docker://{REGISTRY}:{}/team/app:v1", registry.addr.port());
    let pull = |to: &std::path::Path, creds: &str| {
        let dest = format!("dir:{}", to.display());
        let out = skopeo(
            &skopeo_bin,
            Some(porter.addr),
            &[
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                creds,
                &reference,
                &dest,
            ],
        );
        if !out.status.success() {
            eprintln!("skopeo: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.success()
    };

    let first = work.path().join("first");
    assert!(pull(&first, "ci:s3cret"), "{}", porter.logs());
    assert_eq!(pulled_blob(&first, &image.layer_digest), image.layer);
    let storage_first = storage.hits();
    assert_eq!(
        storage_first, 2,
        "the layer and the config, each from storage once"
    );
    let blob_bytes = (image.layer.len() + image.config().len()) as u64;
    assert_eq!(
        metric(porter.addr, "porter_digest_stored_bytes_total"),
        blob_bytes
    );

    let second = work.path().join("second");
    assert!(pull(&second, "ci:s3cret"), "{}", porter.logs());
    assert_eq!(pulled_blob(&second, &image.layer_digest), image.layer);
    assert_eq!(
        storage.hits(),
        storage_first,
        "the second pull sends the storage host no request"
    );
    assert_eq!(
        metric(porter.addr, "porter_digest_stored_bytes_total"),
        blob_bytes
    );
    assert!(
        signatures.load(Ordering::SeqCst) >= 4,
        "the registry was asked each time"
    );
    eprintln!(
        "bearer registry: first pull {blob_bytes} blob bytes from storage, second pull 0 ({} storage requests in all)",
        storage.hits()
    );

    // A wrong token: the registry's 401 with its challenge, nothing of the stored layer.
    let blob_url = format!(
        "http://{REGISTRY}:{}/v2/team/app/blobs/{}",
        registry.addr.port(),
        image.layer_digest
    );
    let wrong = proxy_get(
        porter.addr,
        &blob_url,
        &[("Authorization", "Bearer forged")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert!(
        wrong
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer realm="))
    );
    assert!(
        wrong.text().contains("UNAUTHORIZED"),
        "the registry's own body"
    );
    assert!(skopeo_fails_with_wrong_credentials(&pull, work.path()));
    assert_eq!(storage.hits(), storage_first);

    let suffix = format!("/blobs/{}", image.layer_digest);
    let mut details = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        details = access_details(&std::fs::read_to_string(&log).unwrap_or_default(), &suffix);
        details.len() >= 3
    }));
    assert_eq!(
        details[..3],
        ["digest-redirect", "digest-auth-checked", "digest-refused"],
        "{details:?}"
    );
}

fn skopeo_fails_with_wrong_credentials(
    pull: &impl Fn(&std::path::Path, &str) -> bool,
    work: &std::path::Path,
) -> bool {
    !pull(&work.join("refused"), "ci:wrong")
}
