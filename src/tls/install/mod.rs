//! `porter ca install` and `porter ca uninstall`: make the machine's clients trust Porter's CA in
//! one step, and take that trust back exactly. Each target has its own module:
//!
//! ```text
//!  system  the OS store: Debian's /usr/local/share/ca-certificates + update-ca-certificates,
//!          or RHEL's /etc/pki/ca-trust/source/anchors + update-ca-trust; and (configs) pip's
//!          /etc/pip.conf and npm's global npmrc pointed at the system bundle
//!  nss     Chromium's $HOME/.pki/nssdb and every Firefox profile, through certutil
//!  java    the JDK's cacerts, through keytool
//!  env     a bundle (system roots + Porter's CA) beside the CA, and a shell snippet pointing
//!          SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT, ... at it, for clients with their own roots
//! ```
//!
//! Install and uninstall undo each other: every file, database entry and keystore alias install
//! adds is one uninstall recognises as this CA's (by content or by a name holding the fingerprint),
//! and uninstall removes nothing else; running either twice changes nothing the second time. Each
//! target answers with an [`Outcome`] saying what ran, and what needs root with the exact command.
//! Only the certificate is ever read or copied: the CA's key never leaves `ca-key.pem`.

pub mod configs;
pub mod env;
pub mod java;
pub mod nss;
pub mod system;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::{CaError, CertificateAuthority};

/// Install or uninstall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Install,
    Uninstall,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Install => "install",
            Direction::Uninstall => "uninstall",
        }
    }
}

/// The places a target is trusted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    System,
    Nss,
    Java,
    Env,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::System => "system",
            Target::Nss => "nss",
            Target::Java => "java",
            Target::Env => "env",
        }
    }

    /// The flag that selects the target alone.
    pub fn flag(self) -> &'static str {
        match self {
            Target::System => "--system",
            Target::Nss => "--nss",
            Target::Java => "--java",
            Target::Env => "--env",
        }
    }
}

/// Where the targets live: everything a test or an image build may move.
#[derive(Debug, Clone)]
pub struct Places {
    /// Every system path (the OS store, its bundle) is taken under this folder; `/` normally. Under
    /// another folder the files are placed but the store's refresh command is not run.
    pub root: PathBuf,
    /// The user's home, for NSS databases (`$HOME`).
    pub home: Option<PathBuf>,
    /// A Java keystore to use instead of the JDK's cacerts.
    pub java_keystore: Option<PathBuf>,
    /// The env snippet's file; `DIR/env.sh` beside the CA when `None`.
    pub env_file: Option<PathBuf>,
    /// The user who ran `sudo porter ca install`: their browsers' databases are the ones meant,
    /// so NSS is changed in their home and as them (root-owned files there would break them).
    pub sudo_user: Option<SudoUser>,
}

/// The user behind `sudo`, from `$SUDO_USER`, `$SUDO_UID`, `$SUDO_GID` and the passwd database.
#[derive(Debug, Clone)]
pub struct SudoUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl SudoUser {
    /// The user when this runs as root under sudo for someone else; `None` otherwise.
    pub fn from_env() -> Option<SudoUser> {
        let name = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty())?;
        let uid: u32 = std::env::var("SUDO_UID").ok()?.parse().ok()?;
        let gid: u32 = std::env::var("SUDO_GID").ok()?.parse().ok()?;
        if uid == 0 || effective_uid() != Some(0) {
            return None;
        }
        // `getent passwd` answers from every source the system uses (files, LDAP, systemd).
        let output = Command::new("getent")
            .args(["passwd", &name])
            .output()
            .ok()?;
        let line = String::from_utf8_lossy(&output.stdout);
        let home = line
            .trim_end()
            .split(':')
            .nth(5)
            .filter(|h| !h.is_empty())?;
        Some(SudoUser {
            name,
            uid,
            gid,
            home: PathBuf::from(home),
        })
    }
}

/// The effective user id, from `/proc/self/status` (its `Uid:` line: real, effective, ...).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Places {
    /// `/`, and `$HOME` and `$SUDO_USER` from the environment.
    pub fn from_env() -> Places {
        Places {
            root: PathBuf::from("/"),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            java_keystore: None,
            env_file: None,
            sudo_user: SudoUser::from_env(),
        }
    }

    /// Whether system paths are the running system's (so refresh commands may run).
    pub fn live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// A system path (absolute, as on a running system) under [`Places::root`].
    pub fn system_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// What one target did (or would need).
#[derive(Debug)]
pub enum Outcome {
    /// Changed something; the text says what, including each command that ran.
    Done(String),
    /// Nothing to change: already installed (or already absent).
    Unchanged(String),
    /// The user running Porter cannot write there; `command` does it.
    NeedsRoot { what: String, command: String },
    /// Not applicable here (no such store, tool missing); the text says why and what would help.
    Skipped(String),
    /// A client `--system` also configures is not on this machine: nothing to change, and not a
    /// failure of the target.
    Absent(String),
    /// It was tried and failed.
    Failed(InstallError),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::Unchanged(_) => "unchanged",
            Outcome::NeedsRoot { .. } => "needs-root",
            Outcome::Skipped(_) => "skipped",
            Outcome::Absent(_) => "absent",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Whether an explicitly asked-for target ended as it should.
    pub fn succeeded(&self) -> bool {
        matches!(
            self,
            Outcome::Done(_) | Outcome::Unchanged(_) | Outcome::Absent(_)
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done(text)
            | Outcome::Unchanged(text)
            | Outcome::Skipped(text)
            | Outcome::Absent(text) => f.write_str(text),
            Outcome::NeedsRoot { what, command } => write!(f, "{what} needs root: {command}"),
            Outcome::Failed(error) => write!(f, "failed: {error}"),
        }
    }
}

/// One line of the report: a target, the place it concerns, and its outcome.
#[derive(Debug)]
pub struct Step {
    pub target: Target,
    pub place: String,
    pub outcome: Outcome,
}

/// Why a target failed.
#[derive(Debug)]
pub enum InstallError {
    /// A file or folder could not be read or written.
    Io { path: PathBuf, error: io::Error },
    /// A command could not start or exited with an error.
    Command { command: String, detail: String },
    /// The file install would write holds another certificate.
    Conflict { path: PathBuf, found: String },
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            InstallError::Command { command, detail } => write!(f, "`{command}` {detail}"),
            InstallError::Conflict { path, found } => write!(
                f,
                "{} holds another certificate ({found}); it was left as it is: uninstall it with \
                 its own CA's folder, or remove the file",
                path.display()
            ),
        }
    }
}

impl std::error::Error for InstallError {}

/// What install and uninstall act on: the CA's certificate (never its key) and its names.
pub struct Subject {
    /// The certificate file, absolute.
    pub cert_path: PathBuf,
    /// The CA folder, absolute.
    pub dir: PathBuf,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// SHA-256, `AB:CD:…`.
    pub fingerprint: String,
}

impl Subject {
    /// The certificate of the CA in `dir`, read from `ca.pem` alone: installing needs no key, so
    /// the key file is never opened (a user who may not read it can still install the CA). A
    /// `ca.pem` that holds a private key is refused, as the proxy refuses it.
    pub fn load(dir: &Path) -> Result<Subject, CaError> {
        let cert_path = dir.join(super::ca::CERT_FILE);
        let text = match std::fs::read_to_string(&cert_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CaError::Missing(dir.to_path_buf()));
            }
            Err(error) => {
                return Err(CaError::Io {
                    path: cert_path,
                    error,
                });
            }
        };
        if super::ca::holds_private_key(&text) {
            return Err(CaError::KeyInCertificate {
                key_path: dir.join(super::ca::KEY_FILE),
                path: cert_path,
            });
        }
        let der = super::ca::pem_certificate(&cert_path, &text)?;
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Ok(Subject {
            cert_path: dir.join(super::ca::CERT_FILE),
            dir,
            cert_pem: super::ca::certificate_pem(&der),
            fingerprint: super::ca::fingerprint(&der),
            cert_der: der.to_vec(),
        })
    }

    pub fn new(ca: &CertificateAuthority) -> Subject {
        let dir = std::path::absolute(ca.dir()).unwrap_or_else(|_| ca.dir().to_path_buf());
        Subject {
            cert_path: dir.join(super::ca::CERT_FILE),
            dir,
            cert_pem: ca.cert_pem().to_string(),
            cert_der: ca.cert_der().to_vec(),
            fingerprint: ca.fingerprint(),
        }
    }

    /// The name this CA has in NSS databases and Java keystores: its fingerprint's first eight
    /// bytes, so uninstall finds exactly this CA and two Porter CAs never share one.
    pub fn nickname(&self) -> String {
        let hex: String = self.fingerprint.replace(':', "").to_lowercase();
        format!("porter-ca-{}", &hex[..16.min(hex.len())])
    }

    /// Whether a PEM text holds this certificate.
    pub fn is_in_pem(&self, pem: &[u8]) -> bool {
        CertificateDer::pem_slice_iter(pem)
            .flatten()
            .any(|cert| cert.as_ref() == self.cert_der.as_slice())
    }

    /// Whether the PEM file at `path` holds this certificate (false when it cannot be read).
    pub fn is_in_file(&self, path: &Path) -> bool {
        std::fs::read(path).is_ok_and(|pem| self.is_in_pem(&pem))
    }
}

/// Runs each target and returns the report, in install order (reversed for uninstall).
pub fn run(
    direction: Direction,
    targets: &[Target],
    subject: &Subject,
    places: &Places,
) -> Vec<Step> {
    let mut order: Vec<Target> = [Target::System, Target::Nss, Target::Java, Target::Env]
        .into_iter()
        .filter(|t| targets.contains(t))
        .collect();
    if direction == Direction::Uninstall {
        order.reverse();
    }
    let mut steps = Vec::new();
    for target in order {
        match target {
            Target::System => {
                // The store first, then the configs pointing at its bundle; the reverse to undo.
                let mut system = vec![system::apply(direction, subject, places)];
                for client in [configs::Client::Pip, configs::Client::Npm] {
                    system.push(configs::apply(client, direction, subject, places));
                }
                if direction == Direction::Uninstall {
                    system.reverse();
                }
                steps.extend(system);
            }
            Target::Nss => steps.extend(nss::apply(direction, subject, places)),
            Target::Java => steps.push(java::apply(direction, subject, places)),
            Target::Env => steps.extend(env::apply(direction, subject, places)),
        }
    }
    steps
}

/// The "Trusted by:" section of `porter ca show`: one line per place.
pub fn trusted_by(subject: &Subject, places: &Places) -> String {
    let mut lines = vec![("system store".to_string(), system::status(subject, places))];
    for client in [configs::Client::Pip, configs::Client::Npm] {
        if let Some(answer) = configs::status(client, places) {
            lines.push((format!("{} config", client.as_str()), answer));
        }
    }
    lines.extend(nss::status(subject, places));
    lines.extend(java::status(subject, places));
    lines.push(("bundle".to_string(), env::status(subject)));
    let width = lines
        .iter()
        .map(|(place, _)| place.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("Trusted by:\n");
    for (place, answer) in lines {
        out.push_str(&format!("  {place:<width$}  {answer}\n"));
    }
    out
}

/// The `porter ca` command that does `target` in `direction` for this CA, as root.
pub fn root_command(
    direction: Direction,
    target: Target,
    subject: &Subject,
    places: &Places,
) -> String {
    let mut command = format!(
        "sudo porter ca {} {} --ca-dir {}",
        direction.as_str(),
        target.flag(),
        shell_quote(&subject.dir.display().to_string())
    );
    if !places.live() {
        command.push_str(&format!(
            " --root {}",
            shell_quote(&places.root.display().to_string())
        ));
    }
    command
}

/// Runs a command to completion, capturing its output; a failure names the command and says why.
pub fn run_command(command: &mut Command) -> Result<String, InstallError> {
    run_command_with_input(command, b"")
}

/// [`run_command`] with `input` on its standard input.
pub fn run_command_with_input(command: &mut Command, input: &[u8]) -> Result<String, InstallError> {
    use std::io::Write as _;
    use std::process::Stdio;
    let shown = format!("{command:?}").replace('"', "");
    let start_error = |e: io::Error| InstallError::Command {
        command: shown.clone(),
        detail: format!("could not start: {e}"),
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(start_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that reads nothing closes its end: not an error of ours.
        let _ = stdin.write_all(input);
    }
    let output = child.wait_with_output().map_err(start_error)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(InstallError::Command {
            command: shown,
            detail: format!("failed ({}): {}", output.status, text.trim()),
        })
    }
}

/// Whether the running user may write in (or to) `path`.
pub fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// The first of `names` found in a `PATH` folder.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `text` quoted for a POSIX shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_paths_and_quotes_the_rest() {
        assert_eq!(shell_quote("/srv/porter/ca"), "/srv/porter/ca");
        assert_eq!(shell_quote("/my ca/it's"), r"'/my ca/it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
