//! The operating system's trust store, which curl, git, wget, apt, Debian's python3-requests,
//! OpenSSL and GnuTLS programs read. Two families, told apart by which anchor folder exists:
//!
//! ```text
//!  Debian/Ubuntu  /usr/local/share/ca-certificates/porter-ca.crt   update-ca-certificates
//!                 -> /etc/ssl/certs/ca-certificates.crt
//!  RHEL/Fedora    /etc/pki/ca-trust/source/anchors/porter-ca.crt  update-ca-trust
//!                 -> /etc/pki/tls/certs/ca-bundle.crt
//! ```
//!
//! The anchor file is this CA's alone: a `porter-ca.crt` holding another certificate is never
//! overwritten or removed. Under `--root` other than `/` the file is placed (or removed) but the
//! refresh command is not run, since it would rebuild the running system's bundle, not the one
//! under the root; the report says so and names the command to run inside.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;

use super::{
    Direction, InstallError, Outcome, Places, Step, Subject, Target, root_command, run_command,
    writable,
};

/// The anchor file's name in either family's folder.
pub const FILE_NAME: &str = "porter-ca.crt";

/// A family of system trust stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    RedHat,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Debian => "Debian/Ubuntu",
            Family::RedHat => "RHEL/Fedora",
        }
    }

    /// The folder of local anchors, as on a running system.
    pub fn anchor_dir(self) -> &'static str {
        match self {
            Family::Debian => "/usr/local/share/ca-certificates",
            Family::RedHat => "/etc/pki/ca-trust/source/anchors",
        }
    }

    /// The command that rebuilds the bundle from the anchors.
    pub fn refresh(self) -> &'static str {
        match self {
            Family::Debian => "update-ca-certificates",
            Family::RedHat => "update-ca-trust",
        }
    }

    /// The bundle clients read, as on a running system.
    pub fn bundle(self) -> &'static str {
        match self {
            Family::Debian => "/etc/ssl/certs/ca-certificates.crt",
            Family::RedHat => "/etc/pki/tls/certs/ca-bundle.crt",
        }
    }

    /// The folder the refresh command writes, as on a running system.
    pub fn output_dir(self) -> &'static str {
        match self {
            Family::Debian => "/etc/ssl/certs",
            Family::RedHat => "/etc/pki/ca-trust/extracted",
        }
    }

    /// The family whose anchor folder exists under the root, Debian's first.
    pub fn detect(places: &Places) -> Option<Family> {
        [Family::Debian, Family::RedHat]
            .into_iter()
            .find(|family| places.system_path(family.anchor_dir()).is_dir())
    }
}

/// Whether and how the system store trusts the CA, for `porter ca show`.
pub fn status(subject: &Subject, places: &Places) -> String {
    let Some(family) = Family::detect(places) else {
        return "no (no system store found)".to_string();
    };
    let file = places.system_path(family.anchor_dir()).join(FILE_NAME);
    let bundle = places.system_path(family.bundle());
    match (subject.is_in_file(&file), subject.is_in_file(&bundle)) {
        (true, true) => format!("yes: {} and in {}", file.display(), bundle.display()),
        (true, false) => format!(
            "not yet: {} is there but not in {} (run {})",
            file.display(),
            bundle.display(),
            family.refresh()
        ),
        (false, true) => format!(
            "in {} without {} (run {} to drop it)",
            bundle.display(),
            file.display(),
            family.refresh()
        ),
        (false, false) => "no".to_string(),
    }
}

/// Installs or uninstalls the anchor file and rebuilds the bundle.
pub fn apply(direction: Direction, subject: &Subject, places: &Places) -> Step {
    let Some(family) = Family::detect(places) else {
        return Step {
            target: Target::System,
            place: "system store".to_string(),
            outcome: Outcome::Skipped(format!(
                "no system store found: neither {} nor {} exists{}",
                places.system_path(Family::Debian.anchor_dir()).display(),
                places.system_path(Family::RedHat.anchor_dir()).display(),
                if places.live() {
                    " (install ca-certificates)"
                } else {
                    ""
                }
            )),
        };
    };
    let outcome = match outcome(direction, family, subject, places) {
        Ok(outcome) => outcome,
        Err(error) => Outcome::Failed(error),
    };
    Step {
        target: Target::System,
        place: format!("system store ({})", family.as_str()),
        outcome,
    }
}

fn outcome(
    direction: Direction,
    family: Family,
    subject: &Subject,
    places: &Places,
) -> Result<Outcome, InstallError> {
    let dir = places.system_path(family.anchor_dir());
    let file = dir.join(FILE_NAME);
    let bundle = places.system_path(family.bundle());
    let existing = match fs::read(&file) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(InstallError::Io { path: file, error }),
    };
    let ours = existing.as_deref().is_some_and(|b| subject.is_in_pem(b));
    let in_bundle = subject.is_in_file(&bundle);
    if let (Some(bytes), false) = (&existing, ours) {
        use rustls_pki_types::pem::PemObject;
        let first = rustls_pki_types::CertificateDer::pem_slice_iter(bytes)
            .flatten()
            .next();
        let found = match first {
            Some(cert) => format!("fingerprint {}", super::super::ca::fingerprint(&cert)),
            None => "no certificate".to_string(),
        };
        return match direction {
            Direction::Install => Err(InstallError::Conflict { path: file, found }),
            Direction::Uninstall => Ok(Outcome::Unchanged(format!(
                "not installed ({} holds another certificate, {found}, left as it is)",
                file.display()
            ))),
        };
    }
    // Nothing to do when the file and the bundle already agree with the wanted state (the bundle
    // is only looked at where the refresh command would run).
    let wanted = direction == Direction::Install;
    if ours == wanted && (!places.live() || in_bundle == wanted) {
        return Ok(Outcome::Unchanged(match direction {
            Direction::Install => "already trusted".to_string(),
            Direction::Uninstall => "not installed".to_string(),
        }));
    }
    let needs_root = |what: &str| Outcome::NeedsRoot {
        what: what.to_string(),
        command: root_command(direction, Target::System, subject, places),
    };
    if !writable(&dir) {
        return Ok(needs_root(&format!("writing {}", dir.display())));
    }
    if places.live() && !writable(&places.system_path(family.output_dir())) {
        return Ok(needs_root(family.refresh()));
    }
    let mut did = Vec::new();
    match (direction, ours) {
        (Direction::Install, false) => {
            write_anchor(&file, &subject.cert_pem).map_err(|error| InstallError::Io {
                path: file.clone(),
                error,
            })?;
            did.push(format!("added {}", file.display()));
        }
        (Direction::Uninstall, true) => {
            fs::remove_file(&file).map_err(|error| InstallError::Io {
                path: file.clone(),
                error,
            })?;
            did.push(format!("removed {}", file.display()));
        }
        _ => {}
    }
    if places.live() {
        let mut command = Command::new(family.refresh());
        if family == Family::RedHat {
            command.arg("extract");
        }
        run_command(&mut command)?;
        did.push(format!("ran {}", family.refresh()));
        if subject.is_in_file(&bundle) != wanted {
            did.push(format!(
                "but {} {} it afterwards",
                bundle.display(),
                if wanted {
                    "does not hold"
                } else {
                    "still holds"
                }
            ));
            return Err(InstallError::Command {
                command: family.refresh().to_string(),
                detail: did.join("; "),
            });
        }
    } else {
        did.push(format!(
            "did not run {} (--root {}: `chroot {} {}` rebuilds that root's bundle)",
            family.refresh(),
            places.root.display(),
            places.root.display(),
            family.refresh()
        ));
    }
    Ok(Outcome::Done(did.join("; ")))
}

/// Writes the anchor as a new file, 0644 (it is public; the refresh reads it as root).
fn write_anchor(path: &PathBuf, pem: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}
