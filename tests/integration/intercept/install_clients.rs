//! Real clients through an intercepting proxy, trusting Porter's CA only the way `porter ca
//! install` set up, with no CA option or variable of their own:
//!
//! - after `porter ca install --system`, in a private mount namespace whose /etc is a copy on
//!   tmpfs and whose /usr/local/share/ca-certificates and /etc/ssl/certs are fresh tmpfs mounts (so
//!   this machine's real trust store and /etc/pip.conf are never touched), with npm's prefix a
//!   folder of the test's own: curl, git, python's urllib, Debian's python3-requests, pip (through
//!   the /etc/pip.conf install writes), npm (through the global npmrc install writes), cargo and
//!   apt-get; each fails before install and again after uninstall;
//! - after sourcing the env snippet (`--env FILE`, no system store): curl, git, urllib, requests
//!   (pip-installed, certifi), pip, npm and cargo.
//!
//! The origin is `porter serve --tls` on trust.porter.test (127.0.0.15, from .ci/run's /etc/hosts)
//! serving static files: a file, a git repository for dumb HTTP, a pip simple index, an npm
//! registry's packument and tarball, a cargo sparse registry and a flat apt repository. The proxy trusts the origin's
//! CA with `--upstream-ca`. Certifi-based requests (pip-installed) has no config file: only the
//! snippet's REQUESTS_CA_BUNDLE reaches it, so it is in the snippet test alone.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::install_fixtures::*;
use super::*;

const HOST: &str = "trust.porter.test";

/// Debian's python, whose python3-requests reads the system store.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Variables that would give a client a CA of its own: every test run starts without them.
const CA_VARIABLES: [&str; 16] = [
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "npm_config_cafile",
    "NPM_CONFIG_CAFILE",
    "CARGO_HTTP_CAINFO",
    "GIT_SSL_CAINFO",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// One client: a shell function body (`$1` is the phase), whether it reads the system store, and
/// whether the env snippet reaches it (apt through the file its `APT_CONFIG` names).
struct Client {
    name: &'static str,
    body: String,
    system_store: bool,
    snippet: bool,
}

/// The origin, the proxy and the clients whose fixtures were built.
struct Rig {
    dir: tempfile::TempDir,
    _origin: Porter,
    proxy: Porter,
    url: String,
    python: String,
    clients: Vec<Client>,
}

impl Rig {
    /// The origin and proxy, and every client whose tool is here (CI has them all).
    fn start() -> Option<Rig> {
        require_test_host(HOST)?;
        require_tool(&["curl"], "curl")?;
        require_tool(&["git"], "git")?;
        if !require_python_module("requests", "python3-requests") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (www, work) = (dir.path().join("www"), dir.path().join("work"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(www.join("hello.txt"), "hello through porter\n").unwrap();
        let origin = Porter::start_at(
            &[
                "serve",
                "--tls",
                "--tls-name",
                HOST,
                "--root",
                "www",
                "--ban-after",
                "0",
                "--special-after",
                "0",
                "--cookies",
                "work/cookies.json",
                "--event-log",
                "work/events.log",
            ],
            Some(dir.path()),
            "127.0.0.15:0",
        );
        let url = format!("https://{HOST}:{}", origin.addr.port());
        let python = String::from_utf8_lossy(
            &Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .expect("python3 runs")
                .stdout,
        )
        .trim()
        .to_string();
        git_repo(&www, &work);
        let proxy_args = |dir: &Path| {
            let p = |name: &str| dir.join(name).display().to_string();
            vec![
                "proxy".to_string(),
                "--intercept".to_string(),
                "--cache-dir".to_string(),
                p("cache"),
                "--ca-dir".to_string(),
                p("ca"),
                "--upstream-ca".to_string(),
                p("serve-ca/ca.pem"),
                "--connect-port".to_string(),
                origin.addr.port().to_string(),
            ]
        };
        let args = proxy_args(dir.path());
        let proxy = Porter::start(&args.iter().map(String::as_str).collect::<Vec<_>>());

        let mut clients = vec![
            Client {
                name: "curl",
                body: r#"curl -q -sS -f --max-time 20 -x "http://$PROXY" "$URL/hello.txt""#.into(),
                system_store: true,
                snippet: true,
            },
            Client {
                name: "git",
                body: r#"git -c http.proxy="http://$PROXY" -c http.lowSpeedLimit=1 -c http.lowSpeedTime=20 ls-remote "$URL/repo.git""#.into(),
                system_store: true,
                snippet: true,
            },
            Client {
                name: "urllib",
                body: r#""$PYTHON" -c 'import sys, urllib.request as u; print(u.build_opener(u.ProxyHandler({"https": sys.argv[2]})).open(sys.argv[1], timeout=20).read())' "$URL/hello.txt" "http://$PROXY""#.into(),
                system_store: true,
                snippet: true,
            },
        ];
        // Certifi-based requests (pip's, not Debian's) reads only its own list and no config
        // file: the snippet reaches it, the system store does not.
        let requests = |python: &str| {
            format!(
                r#""{python}" -c 'import sys, requests; r = requests.get(sys.argv[1], proxies={{"https": sys.argv[2]}}, timeout=20); r.raise_for_status(); print(r.text)' "$URL/hello.txt" "http://$PROXY""#
            )
        };
        clients.push(Client {
            name: "requests",
            body: requests("$PYTHON"),
            system_store: requests_reads_the_system_store(&python),
            snippet: true,
        });
        // Debian's python3-requests reads the system store: `python3 -c 'import requests'` as
        // Debian ships it.
        if requests_reads_the_system_store(DEBIAN_PYTHON) {
            clients.push(Client {
                name: "debian_requests",
                body: requests(DEBIAN_PYTHON),
                system_store: true,
                snippet: false,
            });
        } else {
            skip_unless_ci(
                &format!("{DEBIAN_PYTHON} cannot import Debian's requests"),
                "apt-get install python3-requests",
            );
        }
        if require_python_module("pip", "python3-pip") {
            pip_index(&www);
            clients.push(Client {
                name: "pip",
                body: r#""$PYTHON" -m pip download --no-deps --no-cache-dir --retries 0 --timeout 20 --index-url "$URL/simple/" --proxy "http://$PROXY" --dest "$WORK/pip-$1" porter-demo"#.into(),
                // Before 24.2 certifi only, but /etc/pip.conf's cert names the system bundle.
                system_store: true,
                snippet: true,
            });
        }
        if require_tool(&["npm"], "npm").is_some() {
            npm_registry(&www, &work, &url);
            clients.push(Client {
                name: "npm",
                body: r#"mkdir -p "$WORK/npm-$1" && npm pack porter-demo@1.0.0 --registry "$URL/npm/" --proxy "http://$PROXY" --https-proxy "http://$PROXY" --cache "$WORK/npm-cache-$1" --userconfig "$WORK/npmrc" --pack-destination "$WORK/npm-$1" --fetch-retries 0 --fetch-timeout 20000"#.into(),
                // node's built-in roots, but the global npmrc's cafile names the system bundle.
                system_store: true,
                snippet: true,
            });
        }
        cargo_registry(&www, &work, &url);
        clients.push(Client {
            name: "cargo",
            body: r#"rm -f "$WORK/consumer/Cargo.lock"; env CARGO_HOME="$WORK/cargo-home-$1" CARGO_REGISTRIES_PORTER_INDEX="sparse+$URL/cargo/index/" CARGO_HTTP_PROXY="http://$PROXY" CARGO_NET_RETRY=0 CARGO_HTTP_TIMEOUT=20 cargo fetch --manifest-path "$WORK/consumer/Cargo.toml""#.into(),
            system_store: true,
            snippet: true,
        });
        if require_tool(&["apt-get"], "apt").is_some()
            && require_tool(&["dpkg-deb"], "dpkg").is_some()
        {
            apt_repository(&www, &work, &url);
            clients.push(Client {
                name: "apt",
                body: r#"rm -rf "$WORK/apt/state-$1" && mkdir -p "$WORK/apt/state-$1/lists/partial" "$WORK/apt/cache-$1/archives/partial" "$WORK/apt/out-$1" && cd "$WORK/apt/out-$1" && for action in update "download porter-demo"; do apt-get -q -c "$WORK/apt/apt.conf" -o Dir::State="$WORK/apt/state-$1" -o Dir::Cache="$WORK/apt/cache-$1" -o Acquire::https::Proxy="http://$PROXY" $action || exit 1; done && test -s porter-demo_1.0_all.deb"#.into(),
                system_store: true,
                snippet: true,
            });
        }
        Some(Rig {
            dir,
            _origin: origin,
            proxy,
            url,
            python,
            clients,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The shell functions `check PHASE NAME` and `clients PHASE` for `chosen` clients.
    fn functions(&self, chosen: &[&Client]) -> String {
        let mut text = String::from(
            "check() { if client_$2 \"$1\" >\"$LOGS/$1.$2\" 2>&1; then echo \"$1 $2 ok\"; \
             else echo \"$1 $2 fail\"; fi; }\n",
        );
        for client in chosen {
            // A subshell each, so a `cd` or `exit` stays in the client.
            text.push_str(&format!("client_{}() ( {} )\n", client.name, client.body));
        }
        let names: Vec<&str> = chosen.iter().map(|c| c.name).collect();
        text.push_str(&format!(
            "clients() {{ for c in {}; do check \"$1\" $c; done; }}\n",
            names.join(" ")
        ));
        text
    }

    /// Runs `script` with `sh` (through `wrapper`, e.g. `unshare -m`), in a clean environment
    /// but for PATH and HOME, killing it after five minutes; returns PHASE NAME -> ok.
    fn run(&self, wrapper: &[&str], script: &str) -> BTreeMap<(String, String), bool> {
        let path = self.path("work/script.sh");
        std::fs::write(&path, script).unwrap();
        let logs = self.path("work/logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut command = Command::new(wrapper.first().copied().unwrap_or("sh"));
        if !wrapper.is_empty() {
            command.args(&wrapper[1..]).arg("sh");
        }
        command.arg(&path);
        for variable in CA_VARIABLES {
            command.env_remove(variable);
        }
        command
            .env("PROXY", self.proxy.addr.to_string())
            .env("URL", &self.url)
            .env("WORK", self.path("work"))
            .env("LOGS", &logs)
            .env("PYTHON", &self.python)
            .env("PORTER", env!("CARGO_BIN_EXE_porter"))
            .env("CA_DIR", self.path("ca"))
            .env(
                "OUTER_NS",
                std::fs::read_link("/proc/self/ns/mnt").unwrap_or_default(),
            )
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("NPM_CONFIG_PREFIX", self.path("work/npm-prefix"))
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_NO_INPUT", "1")
            .env_remove("PIP_INDEX_URL")
            .env_remove("PIP_EXTRA_INDEX_URL")
            .env("SUDO_USER", "")
            // Not the repository: cargo reads .cargo/config.toml from the folders above its cwd.
            .current_dir(self.path("work"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.path("work/stdout")).unwrap())
            .stderr(std::fs::File::create(self.path("work/stderr")).unwrap());
        let mut child = command.spawn().expect("sh runs");
        let deadline = Instant::now() + Duration::from_secs(300);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the client script did not finish in five minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = std::fs::read_to_string(self.path("work/stdout")).unwrap_or_default();
        let stderr = std::fs::read_to_string(self.path("work/stderr")).unwrap_or_default();
        assert!(
            status.success(),
            "the script failed ({status}):\n{stdout}\n{stderr}"
        );
        eprintln!("client results:\n{stdout}");
        stdout
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let (phase, name, result) = (words.next()?, words.next()?, words.next()?);
                Some(((phase.to_string(), name.to_string()), result == "ok"))
            })
            .collect()
    }

    /// Asserts each client's result in each phase, quoting its output when it is not as expected.
    fn expect(
        &self,
        results: &BTreeMap<(String, String), bool>,
        chosen: &[&Client],
        phases: &[(&str, bool)],
    ) {
        let mut wrong = Vec::new();
        for client in chosen {
            for (phase, ok) in phases {
                let key = (phase.to_string(), client.name.to_string());
                if results.get(&key) != Some(ok) {
                    let log = std::fs::read_to_string(
                        self.path("work/logs")
                            .join(format!("{phase}.{}", client.name)),
                    )
                    .unwrap_or_default();
                    wrong.push(format!(
                        "{} in phase {phase}: expected {}, got {:?}\n{log}",
                        client.name,
                        if *ok { "ok" } else { "a failure" },
                        results.get(&key)
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

/// Whether this test may build a private mount namespace: root, `unshare` and
/// `update-ca-certificates` here, and `unshare -m` allowed.
pub(super) fn namespaces_allowed() -> bool {
    let Some(_) = require_tool(&["unshare"], "util-linux") else {
        return false;
    };
    let Some(_) = require_tool(&["update-ca-certificates"], "ca-certificates") else {
        return false;
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let works = root
        && Command::new("unshare")
            .args(["-m", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !works {
        skip_unless_ci(
            "this test needs root and `unshare -m` (a private mount namespace)",
            "run as root, as .ci/run does",
        );
    }
    works
}

/// The namespace's first lines: refuse to go on outside a new mount namespace, then a copy of /etc
/// on tmpfs with no pip config (pip reads /etc/pip.conf, so PIP_CONFIG_FILE is unset), fresh tmpfs
/// mounts over the anchors, the certificate folder and the hooks (Java's keystore hook), and the
/// distribution's roots rebuilt into them. `set -e`: any failure stops the script before install.
const PRIVATE_STORE: &str = r#"set -e
[ "$(readlink /proc/self/ns/mnt)" != "$OUTER_NS" ] || { echo "not in a private mount namespace" >&2; exit 90; }
mount --make-rprivate /
mkdir -p "$WORK/private-etc"
mount -t tmpfs porter-test "$WORK/private-etc"
cp -a /etc/. "$WORK/private-etc/"
mount --bind "$WORK/private-etc" /etc
rm -rf /etc/pip.conf /etc/xdg/pip
unset PIP_CONFIG_FILE
mount -t tmpfs porter-test /usr/local/share/ca-certificates
mount -t tmpfs porter-test /etc/ssl/certs
if [ -d /etc/ca-certificates/update.d ]; then mount -t tmpfs porter-test /etc/ca-certificates/update.d; fi
update-ca-certificates --fresh >/dev/null 2>&1
[ -s /etc/ssl/certs/ca-certificates.crt ]
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt
set +e
"#;

#[test]
fn ca_install_system_makes_curl_git_python_pip_npm_cargo_and_apt_trust_the_proxy_with_no_ca_option_and_uninstall_undoes_it()
 {
    if !namespaces_allowed() {
        return;
    }
    let Some(rig) = Rig::start() else { return };
    let real_anchors = file_names(Path::new("/usr/local/share/ca-certificates"));
    let real_bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").ok();
    let real_pip_conf = std::fs::read("/etc/pip.conf").ok();
    let real_npmrc = real_npm_globalconfig().map(|path| (std::fs::read(&path).ok(), path));
    let chosen: Vec<&Client> = rig.clients.iter().filter(|c| c.system_store).collect();
    let script = format!(
        "{PRIVATE_STORE}{}\
         clients before\n\
         \"$PORTER\" ca install --system --ca-dir \"$CA_DIR\" >\"$LOGS/install\" 2>&1; echo \"install $?\"\n\
         clients installed\n\
         \"$PORTER\" ca uninstall --system --ca-dir \"$CA_DIR\" >\"$LOGS/uninstall\" 2>&1; echo \"uninstall $?\"\n\
         clients uninstalled\n",
        rig.functions(&chosen)
    );
    let results = rig.run(&["unshare", "-m"], &script);
    let install = std::fs::read_to_string(rig.path("work/logs/install")).unwrap_or_default();
    assert!(
        install.contains("ran update-ca-certificates"),
        "{install}\n{results:?}"
    );
    for client in ["pip", "npm"] {
        if chosen.iter().any(|c| c.name == client) {
            assert!(
                install.contains(&format!("done       {client} config")),
                "{install}"
            );
        }
    }
    let uninstall = std::fs::read_to_string(rig.path("work/logs/uninstall")).unwrap_or_default();
    assert!(uninstall.contains("removed"), "{uninstall}");
    // The folder npm's config went in was made by install and taken back by uninstall.
    assert!(!rig.path("work/npm-prefix/etc").exists(), "{uninstall}");
    rig.expect(
        &results,
        &chosen,
        &[
            ("before", false),
            ("installed", true),
            ("uninstalled", false),
        ],
    );
    // This machine's own store never changed.
    assert_eq!(
        file_names(Path::new("/usr/local/share/ca-certificates")),
        real_anchors
    );
    assert_eq!(
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").ok(),
        real_bundle
    );
    assert_eq!(std::fs::read("/etc/pip.conf").ok(), real_pip_conf);
    if let Some((bytes, path)) = real_npmrc {
        assert_eq!(std::fs::read(&path).ok(), bytes, "{}", path.display());
    }
}

/// The global npmrc this machine's npm reads, outside the test's prefix.
fn real_npm_globalconfig() -> Option<PathBuf> {
    let out = Command::new("npm")
        .args(["config", "get", "globalconfig"])
        .env_remove("NPM_CONFIG_PREFIX")
        .env_remove("npm_config_prefix")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    path.starts_with('/').then(|| PathBuf::from(path))
}

#[test]
fn ca_install_env_snippet_makes_every_client_trust_the_proxy_without_the_system_store() {
    let Some(rig) = Rig::start() else { return };
    let env_file = rig.path("work/porter-env.sh");
    let install = run_porter(
        &[
            "ca",
            "install",
            "--env",
            env_file.to_str().unwrap(),
            "--ca-dir",
            rig.path("ca").to_str().unwrap(),
        ],
        rig.dir.path(),
        &[],
        None,
    );
    assert!(install.ok(), "{install:?}");
    let chosen: Vec<&Client> = rig.clients.iter().filter(|c| c.snippet).collect();
    let script = format!(
        "{}clients plain\n. \"$WORK/porter-env.sh\"\nclients sourced\n",
        rig.functions(&chosen)
    );
    let results = rig.run(&[], &script);
    rig.expect(&results, &chosen, &[("plain", false), ("sourced", true)]);
}
