//! Debian's `docker-registry` (distribution 2.8) with htpasswd authentication, pulled through
//! Porter with `skopeo copy --src-creds`: the second pull moves no blob byte from the registry
//! (it answers HEADs that check the credentials), two repositories that share a layer have it
//! stored once, and wrong or missing credentials get the registry's 401 and nothing from the cache.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Image, access_details, free_port, layer_tarball, metric, noise, pulled_blob, skopeo};
use crate::util::{Porter, eventually, proxy_get, require_test_host, require_tool};

const HOST: &str = "registry.porter.test";

/// A running docker-registry, killed when dropped; its output (the access log) in `log`.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(binary: &Path, dir: &Path, ip: IpAddr) -> Registry {
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", "ci", "s3cret"])
            .output()
            .expect("htpasswd runs");
        assert!(htpasswd.status.success());
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = free_port(ip);
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {ip}:{port}\n\
             auth:\n  htpasswd:\n    realm: porter-test\n    path: {}\n",
            dir.join("storage").display(),
            dir.join("htpasswd").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry { child, port, log };
        let addr = SocketAddr::new(ip, port);
        assert!(
            eventually(Duration::from_secs(20), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            }),
            "docker-registry did not listen: {}",
            registry.logs()
        );
        registry
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs of `digest`'s blob the registry answered with 200, in any repository.
    fn blob_gets(&self, digest: &str) -> usize {
        self.logs()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest} ")))
            .filter(|l| l.contains("\" 200 "))
            .count()
    }

    /// Body bytes of the registry's answers to blob requests (GET and HEAD), from its access log
    /// (`"METHOD /v2/.../blobs/sha256:... HTTP/1.1" STATUS BYTES`).
    fn blob_bytes(&self) -> u64 {
        self.logs()
            .lines()
            .filter(|l| {
                l.contains("/blobs/sha256:") && !l.contains("\"PUT ") && !l.contains("\"PATCH ")
            })
            .filter_map(|l| {
                let after = l.split("HTTP/1.1\" ").nth(1)?;
                after.split(' ').nth(1)?.parse::<u64>().ok()
            })
            .sum()
    }

    fn reference(&self, repository: &str) -> String {
        format!("docker://{HOST}:{}/{repository}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn push(skopeo_bin: &Path, image: &Image, registry: &Registry, repository: &str) {
    let from = format!("oci:{}:v1", image.dir.display());
    let to = format!("{}:v1", registry.reference(repository));
    let out = skopeo(
        skopeo_bin,
        None,
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "ci:s3cret",
            &from,
            &to,
        ],
    );
    assert!(out.status.success(), "push: {out:?}\n{}", registry.logs());
}

fn pull(skopeo_bin: &Path, proxy: SocketAddr, reference: &str, creds: &str, to: &Path) -> bool {
    let dest = format!("dir:{}", to.display());
    let out = skopeo(
        skopeo_bin,
        Some(proxy),
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            creds,
            reference,
            &dest,
        ],
    );
    if !out.status.success() {
        eprintln!("skopeo: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[test]
fn skopeo_pulls_twice_with_htpasswd_credentials_and_the_second_moves_no_blob_byte() {
    let Some(skopeo_bin) = require_tool(&["skopeo"], "skopeo") else {
        return;
    };
    let Some(registry_bin) = require_tool(&["docker-registry"], "docker-registry") else {
        return;
    };
    if require_tool(&["htpasswd"], "apache2-utils").is_none() {
        return;
    }
    let Some(ip) = require_test_host(HOST) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&registry_bin, work.path(), ip);
    // Two images that share their layer (1 MiB of noise) and differ in their config.
    let layer = layer_tarball(work.path(), &noise(24, 1 << 20));
    let app = Image::write(&work.path().join("app"), layer.clone(), "app", "v1");
    let tools = Image::write(&work.path().join("tools"), layer, "tools", "v1");
    push(&skopeo_bin, &app, &registry, "team/app");
    push(&skopeo_bin, &tools, &registry, "team/tools");
    let pushed_gets = registry.blob_gets(&app.layer_digest);
    let pushed_bytes = registry.blob_bytes();

    let log = work.path().join("access.log");
    let cache = work.path().join("cache");
    let porter = Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
    ]);
    let app_ref = format!("{}:v1", registry.reference("team/app"));
    let first = work.path().join("first");
    assert!(
        pull(&skopeo_bin, porter.addr, &app_ref, "ci:s3cret", &first),
        "{}",
        porter.logs()
    );
    assert_eq!(pulled_blob(&first, &app.layer_digest), app.layer);
    let stored_first = metric(porter.addr, "porter_digest_stored_bytes_total");
    let blob_bytes = (app.layer.len() + app.config().len()) as u64;
    assert_eq!(stored_first, blob_bytes, "the first pull stores both blobs");
    assert_eq!(registry.blob_gets(&app.layer_digest), pushed_gets + 1);
    let first_bytes = registry.blob_bytes() - pushed_bytes;
    assert_eq!(first_bytes, blob_bytes, "the registry's log agrees");

    let second = work.path().join("second");
    assert!(pull(
        &skopeo_bin,
        porter.addr,
        &app_ref,
        "ci:s3cret",
        &second
    ));
    assert_eq!(pulled_blob(&second, &app.layer_digest), app.layer);
    assert_eq!(
        registry.blob_gets(&app.layer_digest),
        pushed_gets + 1,
        "the second pull GETs no blob from the registry"
    );
    assert_eq!(
        metric(porter.addr, "porter_digest_stored_bytes_total"),
        stored_first
    );
    let second_bytes = registry.blob_bytes() - pushed_bytes - first_bytes;
    assert_eq!(second_bytes, 0, "HEADs only");
    assert!(metric(porter.addr, "porter_digest_auth_checks_total") >= 2);
    assert!(metric(porter.addr, "porter_digest_served_bytes_total") >= blob_bytes);

    // Another repository with the same layer: only its own config comes from the registry.
    let third = work.path().join("third");
    let tools_ref = format!("{}:v1", registry.reference("team/tools"));
    assert!(pull(
        &skopeo_bin,
        porter.addr,
        &tools_ref,
        "ci:s3cret",
        &third
    ));
    assert_eq!(pulled_blob(&third, &tools.layer_digest), tools.layer);
    assert_eq!(
        registry.blob_gets(&app.layer_digest),
        pushed_gets + 1,
        "stored once"
    );
    assert_eq!(
        metric(porter.addr, "porter_digest_stored_bytes_total"),
        stored_first + tools.config().len() as u64
    );
    eprintln!(
        "registry blob bytes: first pull {first_bytes} from upstream, second pull {second_bytes}, other repository {}",
        registry.blob_bytes() - pushed_bytes - first_bytes - second_bytes
    );

    // Wrong credentials: skopeo fails, and a blob request gets the registry's 401 and no byte of
    // the stored layer; so does a request without credentials for a layer stored with them.
    let fourth = work.path().join("fourth");
    assert!(!pull(
        &skopeo_bin,
        porter.addr,
        &app_ref,
        "ci:wrong",
        &fourth
    ));
    let blob_url = format!(
        "http://{HOST}:{}/v2/team/app/blobs/{}",
        registry.port, app.layer_digest
    );
    let wrong = proxy_get(
        porter.addr,
        &blob_url,
        &[("Authorization", "Basic Y2k6d3Jvbmc=")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert!(
        wrong
            .header("www-authenticate")
            .is_some_and(|v| v.contains("Basic"))
    );
    assert!(wrong.body.len() < 1024, "nothing of the layer");
    let anonymous = proxy_get(porter.addr, &blob_url, &[]);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.body.len() < 1024);
    let right = proxy_get(
        porter.addr,
        &blob_url,
        &[("Authorization", "Basic Y2k6czNjcmV0")],
    );
    assert_eq!((right.status, right.body == app.layer), (200, true));
    assert_eq!(
        right.header("docker-content-digest"),
        Some(app.layer_digest.as_str())
    );

    let suffix = format!("/blobs/{}", app.layer_digest);
    let mut details = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        details = access_details(&std::fs::read_to_string(&log).unwrap_or_default(), &suffix);
        details.len() >= 6
    }));
    assert_eq!(details[0], "digest-stored", "{details:?}");
    assert_eq!(details[1], "digest-auth-checked", "{details:?}");
    assert!(
        details.iter().filter(|d| *d == "digest-refused").count() >= 2,
        "{details:?}"
    );
}
