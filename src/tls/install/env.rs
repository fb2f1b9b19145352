//! For clients that carry their own roots instead of reading the system store (python requests and
//! pip use certifi's list, npm and node their built-in one, cargo and some git builds a compiled-in
//! path): a bundle of the system's roots plus Porter's CA, written beside the CA as `bundle.pem`,
//! and a shell snippet (`env.sh` beside it, or `--env FILE`) exporting the variables each client
//! reads. A bundle, not the CA alone, because these variables replace a client's roots: hosts
//! tunnelled with `--no-intercept-host` still show their real certificates.
//!
//! Both files are written to a temporary name, synced and renamed, so a client never reads half of
//! one; both are 0644 (certificates are public). Uninstall removes each only when it is still
//! Porter's: the bundle ends with this CA, and the snippet starts with this CA's header line.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Direction, InstallError, Outcome, Places, Step, Subject, Target, shell_quote};

/// The bundle's file name in the CA folder.
pub const BUNDLE_FILE: &str = "bundle.pem";
/// The snippet's file name in the CA folder when no `--env FILE` is given.
pub const ENV_FILE: &str = "env.sh";

/// apt's configuration file in the CA folder, which the snippet names in `APT_CONFIG` (apt reads the
/// file that variable names besides its own, and takes no CA from any other variable).
pub const APT_FILE: &str = "apt.conf";

/// The variables pointed at the bundle, and why each.
pub const BUNDLE_VARIABLES: [&str; 7] = [
    "SSL_CERT_FILE",      // OpenSSL's default file: python's ssl, ruby, many more
    "REQUESTS_CA_BUNDLE", // python requests (and pip, above PIP_CERT)
    "CURL_CA_BUNDLE",     // curl, and requests when REQUESTS_CA_BUNDLE is unset
    "PIP_CERT",           // pip
    "npm_config_cafile",  // npm's own requests
    "CARGO_HTTP_CAINFO",  // cargo
    "GIT_SSL_CAINFO",     // git over https
];

/// The system's own roots, as on a running system, in the order they are looked for.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Where the bundle goes: beside the CA.
pub fn bundle_path(subject: &Subject) -> PathBuf {
    subject.dir.join(BUNDLE_FILE)
}

/// Where the snippet goes: `--env FILE` (absolute) or beside the CA.
pub fn env_path(subject: &Subject, places: &Places) -> PathBuf {
    match &places.env_file {
        Some(file) => std::path::absolute(file).unwrap_or_else(|_| file.clone()),
        None => subject.dir.join(ENV_FILE),
    }
}

/// Where apt's file goes: beside the CA.
pub fn apt_path(subject: &Subject) -> PathBuf {
    subject.dir.join(APT_FILE)
}

/// apt's file: the bundle as `Acquire::https::CAInfo`, after a first line that marks it as this
/// CA's. `None` for a bundle path apt's quoting cannot hold (a `"` or a line break in it).
fn apt_conf(subject: &Subject) -> Option<String> {
    let bundle = bundle_path(subject).display().to_string();
    if bundle.contains(['"', '\n', '\r']) {
        return None;
    }
    Some(format!(
        "{}\nAcquire::https::CAInfo \"{bundle}\";\n",
        apt_header(subject)
    ))
}

fn apt_header(subject: &Subject) -> String {
    format!(
        "// Porter's CA (SHA-256 {}): apt's CA file while APT_CONFIG names this file",
        subject.fingerprint
    )
}

/// The snippet's first line, which marks the file as this CA's.
fn header(subject: &Subject) -> String {
    format!("# Porter's CA (SHA-256 {})", subject.fingerprint)
}

/// The shell snippet: `export` lines for every client, for `.` or `source`.
pub fn snippet(subject: &Subject, places: &Places) -> String {
    let bundle = shell_quote(&bundle_path(subject).display().to_string());
    let mut text = format!(
        "{} for clients with roots of their own.\n\
         # Written by `porter ca install`; `porter ca uninstall` removes it. Use: . {}\n",
        header(subject),
        // In a comment: a newline in the path must not end it.
        crate::printable::escape(&shell_quote(
            &env_path(subject, places).display().to_string()
        ))
    );
    for variable in BUNDLE_VARIABLES {
        text.push_str(&format!("export {variable}={bundle}\n"));
    }
    if apt_conf(subject).is_some() {
        text.push_str(&format!(
            "export APT_CONFIG={}\n",
            shell_quote(&apt_path(subject).display().to_string())
        ));
    }
    // Node adds these to its built-in roots rather than replacing them: the CA alone is enough.
    text.push_str(&format!(
        "export NODE_EXTRA_CA_CERTS={}\n",
        shell_quote(&subject.cert_path.display().to_string())
    ));
    text
}

/// Instructions for what no file here can change: apt, Docker and containerd/podman registries.
pub fn more_clients(subject: &Subject) -> String {
    let ca = shell_quote(&subject.cert_path.display().to_string());
    // Inside apt's own quotes, within the shell's single quotes: the path as it is.
    let bundle = bundle_path(subject).display().to_string();
    format!(
        "Other clients:\n\
         \x20 apt             reads the system store (--system), or the snippet's APT_CONFIG (keep it with \
         sudo --preserve-env=APT_CONFIG); or: echo 'Acquire::https::CAInfo \"{bundle}\";' \
         | sudo tee /etc/apt/apt.conf.d/99porter-ca\n\
         \x20 Docker          reads the system store at start (restart dockerd after --system); or per registry: \
         sudo install -D -m 0644 {ca} /etc/docker/certs.d/HOST/ca.crt\n\
         \x20 containerd, podman, skopeo  per registry: sudo install -D -m 0644 {ca} /etc/containers/certs.d/HOST/ca.crt\n\
         \x20 python requests  installed with pip it uses certifi's roots and no config file (Debian's \
         python3-requests reads the system store): source the snippet\n"
    )
}

/// Whether the bundle is there and holds the CA, for `porter ca show`.
pub fn status(subject: &Subject) -> String {
    let bundle = bundle_path(subject);
    if subject.is_in_file(&bundle) {
        format!("yes: {}", bundle.display())
    } else {
        "no".to_string()
    }
}

/// Writes (or removes) the bundle and the snippet.
pub fn apply(direction: Direction, subject: &Subject, places: &Places) -> Vec<Step> {
    let bundle = bundle_path(subject);
    let env = env_path(subject, places);
    let step = |place: String, result: Result<Outcome, InstallError>| Step {
        target: Target::Env,
        place,
        outcome: result.unwrap_or_else(Outcome::Failed),
    };
    let bundle_step = || {
        step(
            format!("bundle {}", bundle.display()),
            match direction {
                Direction::Install => install_bundle(&bundle, subject, places),
                Direction::Uninstall => remove_if(
                    &bundle,
                    |text| text.ends_with(&subject.cert_pem),
                    "not Porter's bundle for this CA",
                ),
            },
        )
    };
    let env_step = || {
        step(
            format!("env file {}", env.display()),
            match direction {
                Direction::Install => {
                    install_file(&env, &snippet(subject, places), &header(subject))
                }
                Direction::Uninstall => remove_if(
                    &env,
                    |text| text.starts_with(&header(subject)),
                    "not Porter's snippet for this CA",
                ),
            },
        )
    };
    let apt = apt_path(subject);
    let apt_step = || {
        step(
            format!("apt file {}", apt.display()),
            match (direction, apt_conf(subject)) {
                (Direction::Install, Some(text)) => install_file(&apt, &text, &apt_header(subject)),
                (Direction::Install, None) => Ok(Outcome::Skipped(
                    "the bundle's path holds a quote or a line break, which apt cannot read"
                        .to_string(),
                )),
                (Direction::Uninstall, _) => remove_if(
                    &apt,
                    |text| text.starts_with(&apt_header(subject)),
                    "not Porter's apt file for this CA",
                ),
            },
        )
    };
    match direction {
        Direction::Install => vec![bundle_step(), apt_step(), env_step()],
        Direction::Uninstall => vec![env_step(), apt_step(), bundle_step()],
    }
}

fn install_bundle(
    bundle: &Path,
    subject: &Subject,
    places: &Places,
) -> Result<Outcome, InstallError> {
    let roots = SYSTEM_BUNDLES
        .iter()
        .map(|p| places.system_path(p))
        .find_map(|p| fs::read_to_string(&p).ok().map(|text| (p, text)));
    let (mut text, from) = match roots {
        Some((path, text)) => (
            text,
            format!("the roots of {} + Porter's CA", path.display()),
        ),
        None => (
            String::new(),
            "Porter's CA alone (no system roots found: tunnelled hosts will not verify)"
                .to_string(),
        ),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "# Porter's CA (SHA-256 {})\n",
        subject.fingerprint
    ));
    text.push_str(&subject.cert_pem);
    match fs::read_to_string(bundle) {
        Ok(old) if old == text => return Ok(Outcome::Unchanged(format!("up to date ({from})"))),
        Ok(old) if !old.ends_with(&subject.cert_pem) => {
            return Err(InstallError::Conflict {
                path: bundle.to_path_buf(),
                found: "a file that is not Porter's bundle".to_string(),
            });
        }
        _ => {}
    }
    write_atomic(bundle, text.as_bytes()).map_err(|error| InstallError::Io {
        path: bundle.to_path_buf(),
        error,
    })?;
    Ok(Outcome::Done(format!("written: {from}")))
}

fn install_file(path: &Path, text: &str, header: &str) -> Result<Outcome, InstallError> {
    match fs::read_to_string(path) {
        Ok(old) if old == text => return Ok(Outcome::Unchanged("up to date".to_string())),
        Ok(old) if !old.starts_with(header) => {
            return Err(InstallError::Conflict {
                path: path.to_path_buf(),
                found: "a file that is not Porter's snippet for this CA".to_string(),
            });
        }
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(InstallError::Io {
                path: path.to_path_buf(),
                error: e,
            });
        }
        _ => {}
    }
    write_atomic(path, text.as_bytes()).map_err(|error| InstallError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(Outcome::Done("written".to_string()))
}

/// Removes `path` when `ours` says its text is Porter's; leaves anything else.
fn remove_if(
    path: &Path,
    ours: impl Fn(&str) -> bool,
    other: &str,
) -> Result<Outcome, InstallError> {
    match fs::read_to_string(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok(Outcome::Unchanged("not there".to_string()))
        }
        Ok(text) if ours(&text) => {
            fs::remove_file(path).map_err(|error| InstallError::Io {
                path: path.to_path_buf(),
                error,
            })?;
            Ok(Outcome::Done("removed".to_string()))
        }
        Ok(_) => Ok(Outcome::Unchanged(format!("left as it is ({other})"))),
        Err(error) => Err(InstallError::Io {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// Writes `bytes` to a temporary file beside `path` (0644), syncs it, renames it over `path` and
/// syncs the folder, so readers see the old file or the new one, never a part.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_like(path, bytes, None)
}

/// [`write_atomic`] with the mode and owner `like` (the file replaced: an npmrc holding tokens
/// stays 0600 and its user's), or 0644 and the running user's when `None`.
pub(super) fn write_atomic_like(
    path: &Path,
    bytes: &[u8],
    like: Option<(u32, u32, u32)>,
) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(like.map_or(0o644, |(mode, _, _)| mode))
            .open(&temp)?;
        if let Some((mode, uid, gid)) = like {
            // The umask may have taken bits off the mode.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            if std::os::unix::fs::MetadataExt::uid(&file.metadata()?) != uid
                || std::os::unix::fs::MetadataExt::gid(&file.metadata()?) != gid
            {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(dir: &str) -> Subject {
        Subject {
            cert_path: Path::new(dir).join("ca.pem"),
            dir: PathBuf::from(dir),
            cert_pem: String::new(),
            cert_der: Vec::new(),
            fingerprint: "AB:CD".to_string(),
        }
    }

    #[test]
    fn the_snippet_exports_every_variable_with_paths_a_shell_reads_back_exactly() {
        let dir = "/srv/my ca/it's $HOME\necho escaped";
        let places = Places {
            root: PathBuf::from("/"),
            home: None,
            java_keystore: None,
            env_file: None,
            sudo_user: None,
        };
        let text = snippet(&subject(dir), &places);
        assert!(text.starts_with("# Porter's CA (SHA-256 AB:CD)"), "{text}");
        let mut script = text.clone();
        for variable in BUNDLE_VARIABLES {
            script.push_str(&format!("printf '%s|' \"${variable}\"\n"));
        }
        script.push_str("printf '%s|' \"$NODE_EXTRA_CA_CERTS\"\n");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_terminator('|')
            .map(str::to_string)
            .collect();
        let bundle = format!("{dir}/bundle.pem");
        assert_eq!(lines.len(), BUNDLE_VARIABLES.len() + 1, "{text}");
        assert!(
            lines[..BUNDLE_VARIABLES.len()].iter().all(|l| *l == bundle),
            "{lines:?}"
        );
        assert_eq!(lines.last().unwrap(), &format!("{dir}/ca.pem"));
    }
}
