//! The static files `install_clients` serves from its `porter serve --tls` origin, each built the
//! way its ecosystem builds them: a git repository for dumb HTTP, a pip simple index with a wheel,
//! an npm packument with a tarball from `npm pack`, a cargo sparse registry with a crate from
//! `cargo package`, and a flat apt repository with a package from `dpkg-deb`.

use std::process::Command;

use super::*;

/// Runs a command that must succeed and returns its standard output.
pub(super) fn run_ok(command: &mut Command) -> String {
    let out = command.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository with one commit, ready for dumb HTTP (`git update-server-info`).
pub(super) fn git_repo(www: &Path, work: &Path) {
    let git = |dir: &Path, args: &[&str]| {
        run_ok(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=porter",
                    "-c",
                    "user.email=porter@example.invalid",
                ])
                .args(["-c", "init.defaultBranch=main"])
                .args(args)
                .current_dir(dir)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null"),
        )
    };
    let source = work.join("git-source");
    std::fs::create_dir_all(&source).unwrap();
    git(&source, &["init", "-q"]);
    std::fs::write(source.join("README"), "through porter\n").unwrap();
    git(&source, &["add", "README"]);
    git(&source, &["commit", "-q", "-m", "first"]);
    git(www, &["init", "-q", "--bare", "repo.git"]);
    let bare = www.join("repo.git");
    git(
        &source,
        &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
    );
    git(&bare, &["update-server-info"]);
}

/// A pip simple index for porter-demo 0.1 with its wheel.
pub(super) fn pip_index(www: &Path) {
    let files = www.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let wheel = super::clients::build_wheel(&files);
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&wheel))
    };
    let project = www.join("simple/porter-demo");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("index.html"),
        format!(
            "<!DOCTYPE html><html><body>\n<a href=\"/files/porter_demo-0.1-py3-none-any.whl#sha256={digest}\">\
             porter_demo-0.1-py3-none-any.whl</a>\n</body></html>\n"
        ),
    )
    .unwrap();
}

/// An npm registry's packument and tarball for porter-demo 1.0.0, packed by npm itself.
pub(super) fn npm_registry(www: &Path, work: &Path, url: &str) {
    let source = work.join("npm-source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(
        source.join("package.json"),
        r#"{"name":"porter-demo","version":"1.0.0","description":"through porter","main":"index.js"}"#,
    )
    .unwrap();
    std::fs::write(
        source.join("index.js"),
        "module.exports = 'through porter';\n",
    )
    .unwrap();
    let registry = www.join("npm");
    std::fs::create_dir_all(&registry).unwrap();
    let packed = run_ok(
        Command::new("npm")
            .args(["pack", "--json", "--pack-destination"])
            .arg(&registry)
            .arg("--cache")
            .arg(work.join("npm-pack-cache"))
            .current_dir(&source),
    );
    let packed: serde_json::Value = serde_json::from_str(&packed).expect("npm pack --json");
    let packument = serde_json::json!({
        "name": "porter-demo",
        "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {
            "name": "porter-demo",
            "version": "1.0.0",
            "dist": {
                "tarball": format!("{url}/npm/porter-demo-1.0.0.tgz"),
                "integrity": packed[0]["integrity"],
                "shasum": packed[0]["shasum"],
            },
        }},
    });
    std::fs::write(registry.join("porter-demo"), packument.to_string()).unwrap();
    // An empty user npmrc, and a prefix of the test's own (NPM_CONFIG_PREFIX) so the global npmrc
    // is PREFIX/etc/npmrc, which only `porter ca install --system` writes: a machine's own (a
    // `cafile` in /usr/etc/npmrc, say) would replace the roots this test is about.
    std::fs::write(work.join("npmrc"), "").unwrap();
    std::fs::create_dir_all(work.join("npm-prefix")).unwrap();
}

/// A cargo sparse registry (RFC 2789) with porter-demo 0.1.0, and a crate that depends on it.
pub(super) fn cargo_registry(www: &Path, work: &Path, url: &str) {
    let source = work.join("cargo-source");
    std::fs::create_dir_all(source.join("src")).unwrap();
    std::fs::write(
        source.join("Cargo.toml"),
        "[package]\nname = \"porter-demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         description = \"through porter\"\nlicense = \"MIT\"\n",
    )
    .unwrap();
    std::fs::write(
        source.join("src/lib.rs"),
        "pub const GREETING: &str = \"hi\";\n",
    )
    .unwrap();
    run_ok(
        Command::new("cargo")
            .args(["package", "-q", "--offline", "--no-verify", "--allow-dirty"])
            .env("CARGO_HOME", work.join("cargo-pack-home"))
            .env("CARGO_TARGET_DIR", work.join("cargo-pack-target"))
            .current_dir(&source),
    );
    let crate_file = std::fs::read(work.join("cargo-pack-target/package/porter-demo-0.1.0.crate"))
        .expect("the .crate");
    let cksum = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&crate_file))
    };
    let index = www.join("cargo/index");
    std::fs::create_dir_all(index.join("po/rt")).unwrap();
    std::fs::create_dir_all(www.join("cargo/crates")).unwrap();
    std::fs::write(www.join("cargo/crates/porter-demo-0.1.0.crate"), crate_file).unwrap();
    std::fs::write(
        index.join("config.json"),
        format!(r#"{{"dl":"{url}/cargo/crates/{{crate}}-{{version}}.crate"}}"#),
    )
    .unwrap();
    std::fs::write(
        index.join("po/rt/porter-demo"),
        format!(
            r#"{{"name":"porter-demo","vers":"0.1.0","deps":[],"cksum":"{cksum}","features":{{}},"yanked":false}}"#
        ) + "\n",
    )
    .unwrap();
    let consumer = work.join("consumer");
    std::fs::create_dir_all(consumer.join("src")).unwrap();
    std::fs::write(
        consumer.join("Cargo.toml"),
        "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nporter-demo = { version = \"0.1\", registry = \"porter\" }\n",
    )
    .unwrap();
    std::fs::write(consumer.join("src/main.rs"), "fn main() {}\n").unwrap();
}

/// A flat apt repository (`deb [trusted=yes] URL/apt ./`) with one package, and an apt
/// configuration that reads nothing of this machine's (APT_CONFIG is read before apt.conf.d).
pub(super) fn apt_repository(www: &Path, work: &Path, url: &str) {
    let source = work.join("deb-source");
    std::fs::create_dir_all(source.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(source.join("usr/share/doc/porter-demo")).unwrap();
    let control = "Package: porter-demo\nVersion: 1.0\nArchitecture: all\n\
                   Maintainer: Porter <porter@example.invalid>\n";
    std::fs::write(
        source.join("DEBIAN/control"),
        format!("{control}Description: through porter\n"),
    )
    .unwrap();
    std::fs::write(source.join("usr/share/doc/porter-demo/README"), "hi\n").unwrap();
    let repo = www.join("apt");
    std::fs::create_dir_all(&repo).unwrap();
    let deb = repo.join("porter-demo_1.0_all.deb");
    run_ok(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&source)
            .arg(&deb),
    );
    let bytes = std::fs::read(&deb).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    std::fs::write(
        repo.join("Packages"),
        format!(
            "{control}Filename: ./porter-demo_1.0_all.deb\nSize: {}\nSHA256: {digest}\n\
             Description: through porter\n",
            bytes.len()
        ),
    )
    .unwrap();
    let apt = work.join("apt");
    std::fs::create_dir_all(apt.join("empty")).unwrap();
    std::fs::write(apt.join("status"), "").unwrap();
    std::fs::write(
        apt.join("sources.list"),
        format!("deb [trusted=yes] {url}/apt ./\n"),
    )
    .unwrap();
    let p = |name: &str| apt.join(name).display().to_string();
    std::fs::write(
        apt.join("apt.conf"),
        format!(
            "Dir::Etc::Parts \"{}\";\nDir::Etc::SourceParts \"{}\";\nDir::Etc::SourceList \"{}\";\n\
             Dir::State::status \"{}\";\nDebug::NoLocking \"true\";\nAPT::Sandbox::User \"root\";\n\
             Acquire::Retries \"0\";\nAcquire::https::Timeout \"20\";\n",
            p("empty"),
            p("empty"),
            p("sources.list"),
            p("status")
        ),
    )
    .unwrap();
}

/// Whether python requests reads the system store (Debian's python3-requests) rather than certifi.
pub(super) fn requests_reads_the_system_store(python: &str) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import requests.certs, sys; sys.exit(0 if requests.certs.where().startswith('/etc/') else 1)",
        ])
        .status()
        .is_ok_and(|s| s.success())
}
