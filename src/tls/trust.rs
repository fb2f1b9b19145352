//! How to make each common client trust Porter's CA: printed by `porter ca show`, logged when
//! `--intercept` creates a CA, and repeated in docs/guide.md's "HTTPS" section. It leads with
//! `porter ca install` (`tls::install`), which does all of it in one step; the per-client lines
//! follow for other machines and for doing it by hand.

use std::fmt::Write as _;
use std::path::Path;

/// One client and what makes it trust the CA at `{ca}`.
pub const CLIENTS: [(&str, &str); 9] = [
    (
        "curl",
        "curl --cacert {ca} -x http://PROXY https://example.com/",
    ),
    (
        "Debian/Ubuntu system store",
        "sudo cp {ca} /usr/local/share/ca-certificates/porter-ca.crt && sudo update-ca-certificates",
    ),
    (
        "pip",
        "export PIP_CERT={ca}    (or pip --cert {ca}; a REQUESTS_CA_BUNDLE set wins over PIP_CERT)",
    ),
    (
        "npm and node",
        "export NODE_EXTRA_CA_CERTS={ca}    (a cafile in an npmrc replaces it for npm: export npm_config_cafile={ca})",
    ),
    ("cargo", "export CARGO_HTTP_CAINFO={ca}"),
    ("python requests", "export REQUESTS_CA_BUNDLE={ca}"),
    ("git", "export GIT_SSL_CAINFO={ca}"),
    (
        "Chromium (NSS)",
        "certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n porter -i {ca}",
    ),
    (
        "Firefox (NSS)",
        "certutil -d sql:PROFILE_DIR -A -t C,, -n porter -i {ca}    (PROFILE_DIR: about:profiles)",
    ),
];

/// What the setup page (`/setup`, src/proxy/ops/setup.rs) lists besides [`CLIENTS`]: the other
/// systems' stores, and clients set up outside the environment. `porter ca show` runs on the
/// proxy's host, so it prints [`CLIENTS`] only.
pub const ELSEWHERE: [(&str, &str); 6] = [
    (
        "RHEL/Fedora system store",
        "sudo cp {ca} /etc/pki/ca-trust/source/anchors/porter-ca.pem && sudo update-ca-trust",
    ),
    (
        "macOS system store",
        "sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca}",
    ),
    (
        "Windows system store",
        "certutil -addstore Root {ca}    (in an administrator PowerShell)",
    ),
    (
        "apt",
        "echo \"Acquire::https::CaInfo \\\"{ca}\\\";\" | sudo tee /etc/apt/apt.conf.d/95porter-ca    \
         (apt then trusts this file only; or add the CA to the system store)",
    ),
    (
        "Java (keytool)",
        "sudo keytool -importcert -cacerts -storepass changeit -noprompt -alias porter -file {ca}",
    ),
    (
        "Docker, containerd, podman",
        "sudo mkdir -p /etc/docker/certs.d/REGISTRY && sudo cp {ca} /etc/docker/certs.d/REGISTRY/ca.crt    \
         (containerd: /etc/containerd/certs.d/REGISTRY/, podman: /etc/containers/certs.d/REGISTRY/; \
         REGISTRY as in image names, registry-1.docker.io for Docker Hub; blobs come from other hosts, \
         so add the CA to the system store too and restart the daemon)",
    ),
];

/// Why a bundle: the variables that name one file replace the system's roots. `{ca}` is the CA.
pub const BUNDLE_NOTE: &str = "PIP_CERT, REQUESTS_CA_BUNDLE, CARGO_HTTP_CAINFO and GIT_SSL_CAINFO replace the system's roots: \
     for hosts tunnelled with --no-intercept-host, point them at a bundle of both \
     (cat /etc/ssl/certs/ca-certificates.crt {ca} > bundle.pem).";

/// The CA folder of the certificate path `ca` (its parent), for `--ca-dir`.
fn ca_dir(ca: &str) -> String {
    let dir = Path::new(ca).parent().unwrap_or(Path::new("."));
    crate::tls::install::shell_quote(&dir.display().to_string())
}

/// The instructions for every client, for the CA certificate at `cert`.
pub fn instructions(cert: &Path) -> String {
    let ca = std::path::absolute(cert).unwrap_or_else(|_| cert.to_path_buf());
    let ca = ca.display().to_string();
    let dir = ca_dir(&ca);
    let mut out = format!(
        "To trust it on this machine, in one step (`porter ca uninstall` with the same flags undoes it):\n\
         \x20 sudo porter ca install --ca-dir {dir}    the system store, your browsers (NSS), Java, and {dir}/env.sh\n\
         \x20 . {dir}/env.sh    then, in each shell, for clients with roots of their own (pip, requests, npm, cargo)\n\
         Or client by client:\n"
    );
    for (client, how) in CLIENTS {
        let _ = writeln!(out, "  {client:<28} {}", how.replace("{ca}", &ca));
    }
    out.push_str(
        &"PIP_CERT, REQUESTS_CA_BUNDLE, npm_config_cafile, CARGO_HTTP_CAINFO and GIT_SSL_CAINFO replace \
         the system's roots: for hosts tunnelled with --no-intercept-host, point them at a bundle of \
         both, {dir}/bundle.pem, which `porter ca install --env` writes (and env.sh uses)."
            .replace("{dir}", &dir),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_client_with_the_absolute_path() {
        let text = instructions(Path::new("/srv/porter/ca/ca.pem"));
        for needle in [
            "sudo porter ca install --ca-dir /srv/porter/ca ",
            ". /srv/porter/ca/env.sh",
            "--cacert /srv/porter/ca/ca.pem",
            "update-ca-certificates",
            "PIP_CERT=",
            "NODE_EXTRA_CA_CERTS=",
            "CARGO_HTTP_CAINFO=",
            "REQUESTS_CA_BUNDLE=",
            "GIT_SSL_CAINFO=",
            "certutil -d sql:",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
    }
}
