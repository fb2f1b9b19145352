//! `porter ca install` and `uninstall` on places a test owns: the system store under `--root`, NSS
//! databases under a temporary `HOME`, and a copy of the JDK's keystore (`--java-keystore`), never
//! this machine's own. Install then uninstall must leave every place exactly as it was, each run
//! twice must change nothing the second time, and a `porter-ca.crt` of another CA is never
//! overwritten or removed. `install_clients` drives real clients against the system store.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::*;

/// Every file under `dir` (relative path -> bytes), and every folder (-> None).
fn snapshot(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                found.insert(name, None);
                pending.push(path);
            } else {
                found.insert(name, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

/// A fake system root: Debian's anchor folder and a bundle of this machine's roots.
fn fake_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("usr/local/share/ca-certificates")).unwrap();
    std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
    let roots = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    std::fs::write(root.join("etc/ssl/certs/ca-certificates.crt"), roots).unwrap();
    root
}

/// Runs `porter ca ACTION --ca-dir ca --root ROOT` plus `extra`, with `HOME` set to `home`.
fn ca(action: &str, dir: &Path, root: &Path, home: &Path, extra: &[&str]) -> Run {
    let root = root.to_str().unwrap();
    let mut args = vec!["ca", action, "--ca-dir", "ca", "--root", root];
    args.extend_from_slice(extra);
    run_porter(
        &args,
        dir,
        &[("HOME", home.to_str().unwrap()), ("SUDO_USER", "")],
        None,
    )
}

fn fingerprint_prefix(dir: &Path) -> String {
    let show = run_porter(&["ca", "show", "--ca-dir", "ca"], dir, &[], None);
    let line = show
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256:"))
        .expect("a fingerprint")
        .trim()
        .replace(':', "")
        .to_lowercase();
    format!("porter-ca-{}", &line[..16])
}

#[test]
fn ca_install_under_root_places_the_anchor_bundle_and_env_file_and_uninstall_leaves_root_exactly_as_before()
 {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let root = fake_root(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let (root_before, ca_before) = (snapshot(&root), snapshot(&dir.path().join("ca")));
    let anchor = root.join("usr/local/share/ca-certificates/porter-ca.crt");

    // --system and --env only: nothing here depends on certutil or a JDK.
    let install = ca("install", dir.path(), &root, &home, &["--system", "--env"]);
    assert!(install.ok(), "{install:?}");
    let ca_pem = std::fs::read_to_string(dir.path().join("ca/ca.pem")).unwrap();
    assert_eq!(std::fs::read_to_string(&anchor).unwrap(), ca_pem);
    assert!(
        install
            .stdout
            .contains("did not run update-ca-certificates"),
        "under --root the refresh is not run, and the report says so:\n{}",
        install.stdout
    );
    let bundle = std::fs::read_to_string(dir.path().join("ca/bundle.pem")).unwrap();
    assert!(bundle.ends_with(&ca_pem), "the bundle ends with the CA");
    let env = std::fs::read_to_string(dir.path().join("ca/env.sh")).unwrap();
    let bundle_path = dir.path().canonicalize().unwrap().join("ca/bundle.pem");
    for variable in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "PIP_CERT",
        "npm_config_cafile",
        "CARGO_HTTP_CAINFO",
        "GIT_SSL_CAINFO",
    ] {
        let line = format!("export {variable}={}\n", bundle_path.display());
        assert!(env.contains(&line), "{line} missing:\n{env}");
        assert!(install.stdout.contains(&line), "the snippet is printed too");
    }
    assert!(env.contains("export NODE_EXTRA_CA_CERTS="), "{env}");
    assert!(
        install.stdout.contains("Acquire::https::CAInfo")
            && install.stdout.contains("/etc/docker/certs.d/HOST/ca.crt")
            && install
                .stdout
                .contains("/etc/containers/certs.d/HOST/ca.crt"),
        "{}",
        install.stdout
    );
    let show = ca("show", dir.path(), &root, &home, &[]);
    assert!(
        show.stdout.contains("Trusted by:") && show.stdout.contains("porter-ca.crt is there"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("bundle") && show.stdout.contains("yes: "),
        "{}",
        show.stdout
    );

    // The key is never copied anywhere.
    let key = std::fs::read_to_string(dir.path().join("ca/ca-key.pem")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    for (name, bytes) in snapshot(&root)
        .into_iter()
        .chain(snapshot(&dir.path().join("ca")))
    {
        if name != "ca-key.pem"
            && let Some(bytes) = bytes
        {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(key_line),
                "{name} holds the key"
            );
        }
    }

    // Three steps (anchor, bundle, env file) and pip's and npm's configs where they are here.
    let done = install.stdout.matches("  done ").count();
    assert!(done >= 3, "{}", install.stdout);
    let again = ca("install", dir.path(), &root, &home, &["--system", "--env"]);
    assert!(again.ok(), "{again:?}");
    assert_eq!(
        again.stdout.matches("  unchanged ").count(),
        done,
        "{}",
        again.stdout
    );

    let uninstall = ca(
        "uninstall",
        dir.path(),
        &root,
        &home,
        &["--system", "--env"],
    );
    assert!(uninstall.ok(), "{uninstall:?}");
    assert_eq!(
        snapshot(&root),
        root_before,
        "the root is exactly as before"
    );
    assert_eq!(
        snapshot(&dir.path().join("ca")),
        ca_before,
        "the CA folder too"
    );
    let again = ca(
        "uninstall",
        dir.path(),
        &root,
        &home,
        &["--system", "--env"],
    );
    assert!(again.ok(), "{again:?}");
    assert_eq!(
        again.stdout.matches("  unchanged ").count(),
        done,
        "{}",
        again.stdout
    );
    assert_eq!(snapshot(&root), root_before);
}

#[test]
fn regression_ca_install_never_overwrites_or_uninstall_removes_another_cas_porter_ca_crt() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    assert!(run_porter(&["ca", "init", "--ca-dir", "other"], dir.path(), &[], None).ok());
    let root = fake_root(dir.path());
    let anchor = root.join("usr/local/share/ca-certificates/porter-ca.crt");
    let other = std::fs::read(dir.path().join("other/ca.pem")).unwrap();
    std::fs::write(&anchor, &other).unwrap();

    let install = ca("install", dir.path(), &root, dir.path(), &["--system"]);
    assert_eq!(install.code, Some(1), "{install:?}");
    assert!(
        install.stdout.contains("holds another certificate"),
        "{}",
        install.stdout
    );
    assert_eq!(std::fs::read(&anchor).unwrap(), other);
    let uninstall = ca("uninstall", dir.path(), &root, dir.path(), &["--system"]);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert_eq!(
        std::fs::read(&anchor).unwrap(),
        other,
        "not this CA's: left"
    );

    // A ca.pem holding a key is never installed anywhere.
    std::fs::remove_file(&anchor).unwrap();
    let key = std::fs::read_to_string(dir.path().join("ca/ca-key.pem")).unwrap();
    let cert = std::fs::read_to_string(dir.path().join("ca/ca.pem")).unwrap();
    std::fs::write(dir.path().join("ca/ca.pem"), format!("{cert}{key}")).unwrap();
    let refused = ca("install", dir.path(), &root, dir.path(), &["--system"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("holds a private key"),
        "{}",
        refused.stderr
    );
    assert!(!anchor.exists());
}

/// Whether `certutil -L` lists `nickname` in the database at `db`.
fn nss_holds(db: &Path, nickname: &str) -> bool {
    let out = Command::new("certutil")
        .args(["-L", "-d"])
        .arg(format!("sql:{}", db.display()))
        .output()
        .expect("certutil runs");
    String::from_utf8_lossy(&out.stdout).contains(nickname)
}

#[test]
fn ca_install_nss_adds_the_ca_to_chromium_and_firefox_databases_and_uninstall_removes_it() {
    if require_tool(&["certutil"], "libnss3-tools").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let nickname = fingerprint_prefix(dir.path());
    let root = fake_root(dir.path());
    let home = dir.path().join("home");
    // A Firefox profile with its own database; Chromium's does not exist yet.
    let profile = home.join(".mozilla/firefox/abcd1234.default-release");
    std::fs::create_dir_all(&profile).unwrap();
    let created = Command::new("certutil")
        .args(["-N", "--empty-password", "-d"])
        .arg(format!("sql:{}", profile.display()))
        .status()
        .unwrap();
    assert!(created.success());
    let chromium = home.join(".pki/nssdb");

    let install = ca("install", dir.path(), &root, &home, &["--nss"]);
    assert!(install.ok(), "{install:?}");
    assert!(
        install.stdout.contains("created the database"),
        "{}",
        install.stdout
    );
    assert!(nss_holds(&chromium, &nickname), "{}", install.stdout);
    assert!(nss_holds(&profile, &nickname), "{}", install.stdout);
    let show = ca("show", dir.path(), &root, &home, &[]);
    assert_eq!(
        show.stdout.matches(&format!("yes ({nickname})")).count(),
        2,
        "{}",
        show.stdout
    );
    let again = ca("install", dir.path(), &root, &home, &["--nss"]);
    assert_eq!(
        again.stdout.matches("already holds").count(),
        2,
        "{}",
        again.stdout
    );

    let uninstall = ca("uninstall", dir.path(), &root, &home, &["--nss"]);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert!(!nss_holds(&chromium, &nickname));
    assert!(!nss_holds(&profile, &nickname));
    let again = ca("uninstall", dir.path(), &root, &home, &["--nss"]);
    assert!(again.ok(), "{again:?}");
    assert_eq!(
        again.stdout.matches("does not hold").count(),
        2,
        "{}",
        again.stdout
    );
}

#[test]
fn ca_install_java_imports_into_a_copy_of_cacerts_and_uninstall_deletes_the_alias() {
    // .ci/run installs a JRE (keytool, and Debian's cacerts from ca-certificates-java).
    let Some(keytool) = require_tool(&["keytool"], "default-jre-headless") else {
        return;
    };
    let works = Command::new(&keytool)
        .arg("-help")
        .output()
        .is_ok_and(|o| o.status.success());
    let source = Path::new("/etc/ssl/certs/java/cacerts");
    if !works || !source.is_file() {
        skip_unless_ci(
            &format!("a working keytool and {}", source.display()),
            "apt-get install default-jre-headless",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let alias = fingerprint_prefix(dir.path());
    let store = dir.path().join("cacerts");
    std::fs::copy(source, &store).unwrap();
    let root = fake_root(dir.path());
    let flags = ["--java", "--java-keystore", store.to_str().unwrap()];
    let listed = || {
        Command::new(&keytool)
            .args([
                "-list",
                "-storepass",
                "changeit",
                "-alias",
                &alias,
                "-keystore",
            ])
            .arg(&store)
            .output()
            .unwrap()
            .status
            .success()
    };
    let install = ca("install", dir.path(), &root, dir.path(), &flags);
    assert!(install.ok(), "{install:?}");
    assert!(listed(), "{}", install.stdout);
    let again = ca("install", dir.path(), &root, dir.path(), &flags);
    assert!(again.stdout.contains("already holds"), "{}", again.stdout);
    let uninstall = ca("uninstall", dir.path(), &root, dir.path(), &flags);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert!(!listed());
    let again = ca("uninstall", dir.path(), &root, dir.path(), &flags);
    assert!(again.stdout.contains("does not hold"), "{}", again.stdout);
}

#[test]
fn regression_sudo_ca_install_adds_the_ca_to_the_invoking_users_browsers_as_that_user_not_to_roots()
{
    if require_tool(&["certutil"], "libnss3-tools").is_none()
        || require_tool(&["setpriv"], "util-linux").is_none()
        || !super::install_clients::namespaces_allowed()
    {
        return;
    }
    // A user who exists only in this test's mount namespace: a passwd file bind-mounted over
    // /etc/passwd there, with a home in a folder the user may enter. The CA folder stays root's
    // (0700), so the certificate must reach certutil without the user reading it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let nickname = fingerprint_prefix(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let chown = Command::new("chown")
        .arg("4242:4242")
        .arg(&home)
        .status()
        .unwrap();
    assert!(chown.success());
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str(&format!(
        "porter-sudo-test:x:4242:4242::{}:/bin/sh\n",
        home.display()
    ));
    std::fs::write(dir.path().join("passwd"), passwd).unwrap();
    let script = r#"set -e
[ "$(readlink /proc/self/ns/mnt)" != "$OUTER_NS" ] || exit 90
mount --make-rprivate /
mount --bind "$DIR/passwd" /etc/passwd
export SUDO_USER=porter-sudo-test SUDO_UID=4242 SUDO_GID=4242
"$PORTER" ca install --nss --ca-dir "$DIR/ca" --root "$DIR/root"
echo "owner $(stat -c %u "$DIR/home/.pki/nssdb/cert9.db")"
certutil -L -d "sql:$DIR/home/.pki/nssdb"
"$PORTER" ca show --ca-dir "$DIR/ca" --root "$DIR/root"
"$PORTER" ca uninstall --nss --ca-dir "$DIR/ca" --root "$DIR/root"
echo "after uninstall"
certutil -L -d "sql:$DIR/home/.pki/nssdb"
"#;
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .env("DIR", dir.path())
        .env("PORTER", env!("CARGO_BIN_EXE_porter"))
        // sudo's HOME may be root's or the user's; root's here, and it must stay untouched.
        .env("HOME", dir.path().join("root-home"))
        .env(
            "OUTER_NS",
            std::fs::read_link("/proc/self/ns/mnt").unwrap_or_default(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let (installed, removed) = stdout.split_once("after uninstall").unwrap();
    assert!(
        installed.contains("owner 4242"),
        "the database is the user's:\n{stdout}"
    );
    assert!(installed.contains(&nickname), "{stdout}");
    assert!(
        installed.contains(&format!("yes ({nickname})")),
        "show looks in the user's home too:\n{stdout}"
    );
    assert!(!removed.contains(&nickname), "{stdout}");
    assert!(
        !dir.path().join("root-home/.pki").exists(),
        "root's home untouched"
    );
}

#[test]
fn ca_install_without_a_target_flag_does_every_target_it_can_and_says_why_not_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let root = fake_root(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let before = snapshot(&root);
    let install = ca("install", dir.path(), &root, &home, &[]);
    assert!(
        install.ok(),
        "a target that does not apply is no failure: {install:?}"
    );
    let line = |out: &str, place: &str| {
        out.lines()
            .find(|l| l.contains(place))
            .unwrap_or_else(|| panic!("no {place} line:\n{out}"))
            .to_string()
    };
    assert!(line(&install.stdout, "system store").contains("done"));
    assert!(line(&install.stdout, "bundle ").contains("done"));
    assert!(line(&install.stdout, "env file ").contains("done"));
    // Java under --root without --java-keystore, or without a JDK: skipped, saying why.
    assert!(
        line(&install.stdout, "Java").contains("skipped"),
        "{}",
        install.stdout
    );
    if find_on_path(&["certutil"]).is_some() {
        assert!(line(&install.stdout, "NSS").contains("done"));
    }
    let uninstall = ca("uninstall", dir.path(), &root, &home, &[]);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert_eq!(snapshot(&root), before);
    // Asked for by name, a target that cannot be done is a failure.
    let java = ca("install", dir.path(), &root, &home, &["--java"]);
    assert_eq!(java.code, Some(1), "{java:?}");
    assert!(java.stderr.contains("not done: Java"), "{}", java.stderr);
}

#[test]
fn ca_install_by_a_user_who_cannot_write_the_system_store_says_it_needs_root_with_the_command() {
    let Some(setpriv) = require_tool(&["setpriv"], "util-linux") else {
        return;
    };
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root_user {
        skip_unless_ci(
            "this test switches to nobody, which needs root",
            "run as root, as .ci/run does",
        );
        return;
    }
    // The CA folder is readable by nobody, its key is not: install reads ca.pem alone.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let ca_dir = dir.path().join("ca");
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = fake_root(dir.path());
    let before = snapshot(&root);
    // The binary where nobody can reach it, whatever the modes of the folders above target/.
    let porter = dir.path().join("porter");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_porter"), &porter).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_porter"), &porter).unwrap();
    }
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&porter)
        .args(["ca", "install", "--system", "--ca-dir"])
        .arg(&ca_dir)
        .arg("--root")
        .arg(&root)
        .env("HOME", dir.path())
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let command = format!(
        "needs root: sudo porter ca install --system --ca-dir {} --root {}",
        ca_dir.display(),
        root.display()
    );
    assert!(stdout.contains("needs-root"), "{stdout}");
    assert!(stdout.contains(&command), "{command} missing:\n{stdout}");
    assert!(stderr.contains("not done: system store"), "{stderr}");
    assert_eq!(snapshot(&root), before);
}

#[test]
fn ca_install_system_under_a_rhel_root_uses_the_anchors_folder_and_names_update_ca_trust() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let root = dir.path().join("rhel");
    std::fs::create_dir_all(root.join("etc/pki/ca-trust/source/anchors")).unwrap();
    let before = snapshot(&root);
    let install = ca("install", dir.path(), &root, dir.path(), &["--system"]);
    assert!(install.ok(), "{install:?}");
    assert!(
        install.stdout.contains("system store (RHEL/Fedora)")
            && install.stdout.contains("did not run update-ca-trust"),
        "{}",
        install.stdout
    );
    let anchor = root.join("etc/pki/ca-trust/source/anchors/porter-ca.crt");
    assert_eq!(
        std::fs::read(&anchor).unwrap(),
        std::fs::read(dir.path().join("ca/ca.pem")).unwrap()
    );
    let uninstall = ca("uninstall", dir.path(), &root, dir.path(), &["--system"]);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert_eq!(snapshot(&root), before);
    // A root with neither family's folder: skipped when asked for by name is a failure.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let none = ca("install", dir.path(), &empty, dir.path(), &["--system"]);
    assert_eq!(none.code, Some(1), "{none:?}");
    assert!(
        none.stdout.contains("no system store found"),
        "{}",
        none.stdout
    );
}

/// Runs `porter ca ACTION --system --ca-dir ca --root ROOT` (no `--system` for `show`) with
/// npm's prefix at `prefix`.
fn ca_system(action: &str, dir: &Path, root: &Path, prefix: &str) -> Run {
    let mut args = vec![
        "ca",
        action,
        "--ca-dir",
        "ca",
        "--root",
        root.to_str().unwrap(),
    ];
    if action != "show" {
        args.push("--system");
    }
    run_porter(
        &args,
        dir,
        &[
            ("HOME", dir.to_str().unwrap()),
            ("SUDO_USER", ""),
            ("NPM_CONFIG_PREFIX", prefix),
        ],
        None,
    )
}

#[test]
fn ca_install_system_points_pip_and_npm_configs_at_the_system_bundle_and_uninstall_removes_exactly_its_lines()
 {
    let Some(_) = require_tool(&["npm"], "npm") else {
        return;
    };
    if require_tool(&["pip3", "pip"], "python3-pip").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let root = fake_root(dir.path());
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    let pip_conf = root.join("etc/pip.conf");
    let mine = "# mine\n[global]\ntimeout = 60\n\n[install]\nno-compile = true\n";
    std::fs::write(&pip_conf, mine).unwrap();
    // npm's prefix as npm finds it (npm config get globalconfig), under the root.
    let prefix = "/opt/npm-porter-test";
    let npmrc = root.join("opt/npm-porter-test/etc/npmrc");
    std::fs::create_dir_all(npmrc.parent().unwrap()).unwrap();
    std::fs::write(&npmrc, "//registry.example/:_authToken=secret\n").unwrap();
    std::fs::set_permissions(&npmrc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = snapshot(&root);

    let install = ca_system("install", dir.path(), &root, prefix);
    assert!(install.ok(), "{install:?}");
    let pip = std::fs::read_to_string(&pip_conf).unwrap();
    let global = pip.find("[global]\n").unwrap();
    let install_section = pip.find("[install]").unwrap();
    let cert = pip.find(&format!("\ncert = {bundle}\n")).expect(&pip);
    assert!(
        global < cert && cert < install_section,
        "in [global]:\n{pip}"
    );
    assert_eq!(pip.matches("[global]").count(), 1, "{pip}");
    assert!(pip.contains("Porter"), "a marker naming Porter:\n{pip}");
    let npm = std::fs::read_to_string(&npmrc).unwrap();
    assert!(npm.contains(&format!("\ncafile={bundle}\n")), "{npm}");
    assert!(npm.starts_with("//registry.example/:_authToken=secret\n"));
    assert_eq!(
        std::fs::metadata(&npmrc).unwrap().permissions().mode() & 0o777,
        0o600,
        "an npmrc that may hold tokens keeps its mode"
    );
    assert!(
        install
            .stdout
            .contains(&format!("pip config {}", pip_conf.display())),
        "{}",
        install.stdout
    );

    // What the real clients read: pip and npm name the bundle install pointed them at.
    let show = ca_system("show", dir.path(), &root, prefix);
    let line = |name: &str| {
        show.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("pip config").contains("yes: "), "{}", show.stdout);
    assert!(line("npm config").contains("yes: "), "{}", show.stdout);

    let again = ca_system("install", dir.path(), &root, prefix);
    assert!(
        again.stdout.contains("already points at"),
        "{}",
        again.stdout
    );
    let uninstall = ca_system("uninstall", dir.path(), &root, prefix);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert_eq!(
        snapshot(&root),
        before,
        "exactly the lines install added are gone"
    );
    assert_eq!(
        std::fs::metadata(&npmrc).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Files install created go, with the folder it made for npm's.
    std::fs::remove_file(&pip_conf).unwrap();
    std::fs::remove_dir_all(npmrc.parent().unwrap()).unwrap();
    let before = snapshot(&root);
    let install = ca_system("install", dir.path(), &root, prefix);
    assert!(install.ok(), "{install:?}");
    assert!(pip_conf.is_file() && npmrc.is_file(), "{}", install.stdout);
    let uninstall = ca_system("uninstall", dir.path(), &root, prefix);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert_eq!(snapshot(&root), before, "{}", uninstall.stdout);
    assert!(!root.join("opt/npm-porter-test/etc").exists());
}

#[test]
fn ca_install_system_leaves_a_pip_or_npm_config_that_sets_a_ca_already_and_says_so() {
    let Some(_) = require_tool(&["npm"], "npm") else {
        return;
    };
    if require_tool(&["pip3", "pip"], "python3-pip").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let root = fake_root(dir.path());
    std::fs::write(
        root.join("etc/pip.conf"),
        "[global]\ncert = /opt/corp.pem\n",
    )
    .unwrap();
    let prefix = "/opt/npm-porter-test";
    let npmrc = root.join("opt/npm-porter-test/etc/npmrc");
    std::fs::create_dir_all(npmrc.parent().unwrap()).unwrap();
    std::fs::write(&npmrc, "cafile=/etc/ssl/certs/ca-certificates.crt\n").unwrap();
    let before = snapshot(&root.join("etc"));
    let npm_before = std::fs::read(&npmrc).unwrap();

    let install = ca_system("install", dir.path(), &root, prefix);
    // pip would not trust the CA through another bundle: --system is not done, and says why.
    assert_eq!(install.code, Some(1), "{install:?}");
    assert!(
        install
            .stdout
            .contains("left as it is: it sets cert = /opt/corp.pem already"),
        "{}",
        install.stdout
    );
    assert!(install.stderr.contains("pip config"), "{}", install.stderr);
    assert!(
        install.stdout.contains("(the system bundle)"),
        "npm's cafile is the system bundle already:\n{}",
        install.stdout
    );
    let uninstall = ca_system("uninstall", dir.path(), &root, prefix);
    assert!(uninstall.ok(), "{uninstall:?}");
    assert_eq!(
        snapshot(&root.join("etc")),
        before,
        "pip.conf left exactly as it was"
    );
    assert_eq!(std::fs::read(&npmrc).unwrap(), npm_before);
}
