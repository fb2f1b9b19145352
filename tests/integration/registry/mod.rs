//! Container registries through Porter (issue 24): blobs stored once by digest, the registry kept
//! in charge of who may have them, and signed storage redirects answered from the cache.
//!
//! - `distribution.rs`: Debian's `docker-registry` (the CNCF distribution server) with htpasswd
//!   authentication, pulled with `skopeo copy`.
//! - `bearer.rs`: a small registry of the tests' own that answers with Bearer token challenges and
//!   sends blob requests on to a storage host with a signed, expiring query string.
//! - `intercepted.rs`: a redirect to an HTTPS storage host, followed through `--intercept`.
//! - `digest.rs`: the store's own rules against plain origins: a body that does not match its
//!   digest, apt's by-hash files, `--digest-url` rules.
//!
//! skopeo (Go) never sends requests for loopback names through a proxy, so the registries listen
//! on the test host names `.ci/run` puts in /etc/hosts (`util::require_test_host`).

mod bearer;
mod digest;
mod distribution;
mod intercepted;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

use crate::util::raw_request;

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Bytes that do not compress, from a seed (xorshift), so each test's layer is its own.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A gzip-compressed tarball with one file of `content`, made by `tar` and `gzip -n` (no time
/// stamp in the gzip header, so the same content makes the same digest).
pub fn layer_tarball(dir: &Path, content: &[u8]) -> Vec<u8> {
    let root = dir.join("layer-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("data.bin"), content).unwrap();
    let tar = Command::new("tar")
        .args([
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-cf",
            "-",
        ])
        .arg("-C")
        .arg(&root)
        .arg("data.bin")
        .output()
        .expect("tar runs");
    assert!(tar.status.success(), "tar: {tar:?}");
    let mut gzip = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = gzip.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&tar.stdout));
    let out = gzip.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// An OCI image layout (`oci:` for skopeo) written by the test: one layer, a config naming it,
/// a manifest, and the index tagging it `tag`.
pub struct Image {
    pub dir: PathBuf,
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config_digest: String,
    pub manifest: Vec<u8>,
}

impl Image {
    /// Writes the layout under `dir`; `label` makes the config (and so the image) differ while
    /// the layer stays the same.
    pub fn write(dir: &Path, layer: Vec<u8>, label: &str, tag: &str) -> Image {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| {
            let digest = digest_of(data);
            std::fs::write(blobs.join(&digest[7..]), data).unwrap();
            digest
        };
        let layer_digest = put(&layer);
        // The diff id is the uncompressed tarball's digest.
        let mut gunzip = Command::new("gzip")
            .args(["-d", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = gunzip.stdin.take().unwrap();
        let compressed = layer.clone();
        let writer = std::thread::spawn(move || stdin.write_all(&compressed));
        let tar = gunzip.wait_with_output().unwrap().stdout;
        writer.join().unwrap().unwrap();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"test":"{label}"}}}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            digest_of(&tar)
        );
        let config_digest = put(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let manifest_digest = put(manifest.as_bytes());
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            manifest.len()
        );
        std::fs::write(dir.join("index.json"), index).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Image {
            dir: dir.to_path_buf(),
            layer,
            layer_digest,
            config_digest,
            manifest: manifest.into_bytes(),
        }
    }

    /// The config blob's bytes, read back from the layout.
    pub fn config(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("blobs/sha256").join(&self.config_digest[7..])).unwrap()
    }
}

/// Runs skopeo with `args`, through the proxy at `proxy` when given (HTTP_PROXY and HTTPS_PROXY),
/// never through any proxy of the environment otherwise; a bounded run.
pub fn skopeo(skopeo: &Path, proxy: Option<SocketAddr>, args: &[&str]) -> Output {
    let mut command = Command::new("timeout");
    command
        .arg("120")
        .arg(skopeo)
        .arg("--insecure-policy")
        .args(args)
        .stdin(Stdio::null());
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    if let Some(proxy) = proxy {
        let url = format!("http://{proxy}");
        command.env("HTTP_PROXY", &url).env("HTTPS_PROXY", &url);
    }
    command.output().expect("skopeo runs")
}

/// A free port on `ip`: bound once, then let go for the server the test starts on it.
pub fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `/metrics` series' value.
pub fn metric(proxy: SocketAddr, series: &str) -> u64 {
    let text = raw_request(proxy, b"GET /metrics HTTP/1.1\r\n\r\n")
        .unwrap()
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{text}"))
}

/// The files of a `dir:` image skopeo wrote, by name (blobs are named by their hex digest).
pub fn pulled_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(dir.join(&digest[7..])).unwrap_or_default()
}

/// The access log's lines whose URL ends with `suffix`, each `(status, detail)`, from a porter
/// format log (`... METHOD URL STATUS BYTES ... detail=X`).
pub fn access_details(log: &str, suffix: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.split(' ').any(|field| field.ends_with(suffix)))
        .map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("detail="))
                .unwrap_or("-")
                .to_string()
        })
        .collect()
}
