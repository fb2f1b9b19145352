//! Part of `--system`: the clients that carry roots of their own but read a site-wide config file
//! get pointed at the system bundle, so the system store is all they trust:
//!
//! ```text
//!  pip  /etc/pip.conf, [global] cert = BUNDLE       (pip before 24.2 reads certifi's roots only;
//!                                                    /etc/pip.conf is its global file for all users)
//!  npm  PREFIX/etc/npmrc, cafile=BUNDLE             (node's built-in roots otherwise; PREFIX is
//!                                                    what `npm config get globalconfig` answers)
//! ```
//!
//! BUNDLE is the detected family's (Debian's /etc/ssl/certs/ca-certificates.crt, RHEL's
//! /etc/pki/tls/certs/ca-bundle.crt), which the system store rebuilds with Porter's CA in it. A
//! file that already sets the option (`cert`, or npm's `cafile`/`ca`) is left exactly as it is and
//! the report says what it points at. Otherwise install adds a block between two marker lines
//! naming Porter; uninstall removes exactly that block, and the file (and its folder) when the
//! block's marker says install created them. Python requests installed with pip has no such file
//! (certifi only, `REQUESTS_CA_BUNDLE` from the env snippet); Debian's python3-requests reads the
//! system store itself.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::system::Family;
use super::{Direction, InstallError, Outcome, Places, Step, Subject, Target, root_command};

/// The block's first line, before what it says it created.
const BEGIN: &str = "# BEGIN porter ca install --system: Porter's CA through the system bundle";
/// The block's last line.
const END: &str =
    "# END porter ca install --system (porter ca uninstall --system removes this block)";
/// Said on the first line when install created the file.
const CREATED_FILE: &str = " (created this file)";
/// Said on the first line when install created the file and its folder.
const CREATED_FOLDER: &str = " (created this file and its folder)";

/// A client whose site-wide config file can name a CA bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Pip,
    Npm,
}

impl Client {
    pub fn as_str(self) -> &'static str {
        match self {
            Client::Pip => "pip",
            Client::Npm => "npm",
        }
    }

    /// The option names that already give the client a CA of its own.
    fn options(self) -> &'static [&'static str] {
        match self {
            Client::Pip => &["cert"],
            Client::Npm => &["cafile", "ca", "ca[]"],
        }
    }

    /// The lines install adds (between the markers) when the file has `text`.
    fn lines(self, bundle: &str, text: &str) -> String {
        match self {
            // configparser refuses a second [global]: the line goes into the one there is.
            Client::Pip if has_section(text, "global") => format!("cert = {bundle}\n"),
            Client::Pip => format!("[global]\ncert = {bundle}\n"),
            Client::Npm => format!("cafile={bundle}\n"),
        }
    }
}

/// Where `client`'s site-wide config is on a running system, or why there is none to change.
fn config_file(client: Client) -> Result<PathBuf, String> {
    match client {
        Client::Pip => {
            if ["pip", "pip3"]
                .iter()
                .any(|name| super::find_tool(name).is_some())
            {
                Ok(PathBuf::from("/etc/pip.conf"))
            } else {
                Err("pip is not installed (no pip or pip3 in PATH)".to_string())
            }
        }
        Client::Npm => {
            if super::find_tool("npm").is_none() {
                return Err("npm is not installed (no npm in PATH)".to_string());
            }
            // npm's own answer: $PREFIX/etc/npmrc, with the prefix from npm's config and env.
            let output = Command::new("npm")
                .args(["config", "get", "globalconfig"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map_err(|e| format!("`npm config get globalconfig` could not start: {e}"))?;
            let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if !output.status.success() || !path.starts_with('/') {
                return Err(format!(
                    "`npm config get globalconfig` did not name a file ({})",
                    output.status
                ));
            }
            Ok(PathBuf::from(path))
        }
    }
}

/// `[name]` heads a section of `text`.
fn has_section(text: &str, name: &str) -> bool {
    text.lines()
        .any(|line| line.trim().eq_ignore_ascii_case(&format!("[{name}]")))
}

/// The value of the first of `options` set in `text` outside Porter's block, in any section.
fn set_elsewhere(text: &str, options: &[&str]) -> Option<String> {
    let mut in_block = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with(BEGIN) {
            in_block = true;
        } else if trimmed == END {
            in_block = false;
        }
        if in_block || trimmed.starts_with(['#', ';', '[']) {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(['=', ':']) else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase().replace('_', "-");
        if options.contains(&key.as_str()) {
            return Some(format!("{} = {}", key, value.trim()));
        }
    }
    None
}

/// `text` with Porter's block added: after the `[global]` line for pip when there is one, at the
/// end otherwise. `created` is said on the first line ("" when the file was there).
fn with_block(client: Client, text: &str, bundle: &str, created: &str) -> String {
    let block = format!("{BEGIN}{created}\n{}{END}\n", client.lines(bundle, text));
    let mut out = String::new();
    let mut placed = false;
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push('\n');
        }
        if !placed && client == Client::Pip && line.trim().eq_ignore_ascii_case("[global]") {
            out.push_str(&block);
            placed = true;
        }
    }
    if !placed {
        out.push_str(&block);
    }
    out
}

/// What removing Porter's block left, and what its marker said install created; `None` when the
/// text holds no complete block.
fn without_block(text: &str) -> Option<(String, &'static str)> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_end().starts_with(BEGIN))?;
    let end = start + lines[start..].iter().position(|l| l.trim_end() == END)?;
    let first = lines[start].trim_end();
    let created = if first.ends_with(CREATED_FOLDER) {
        CREATED_FOLDER
    } else if first.ends_with(CREATED_FILE) {
        CREATED_FILE
    } else {
        ""
    };
    let mut rest: String = lines[..start].concat();
    rest.push_str(&lines[end + 1..].concat());
    Some((rest, created))
}

/// Whether and where `client`'s site-wide config points it at the system bundle, for `porter ca
/// show`; `None` when the client is not here.
pub fn status(client: Client, places: &Places) -> Option<String> {
    let file = places.system_path(&config_file(client).ok()?.display().to_string());
    let bundle = Family::detect(places).map(|f| f.bundle());
    let text = fs::read_to_string(&file).unwrap_or_default();
    let answer = match set_elsewhere(&text, client.options()) {
        Some(set) if bundle.is_some_and(|b| set.ends_with(&format!("= {b}"))) => {
            format!("yes: {} sets {set} (the system bundle)", file.display())
        }
        Some(set) => format!(
            "not through the system store: {} sets {set}",
            file.display()
        ),
        None if without_block(&text).is_some() => format!(
            "yes: {} points it at the system bundle (porter ca install)",
            file.display()
        ),
        None => "no".to_string(),
    };
    Some(answer)
}

/// Points `client` at the system bundle, or takes that back.
pub fn apply(client: Client, direction: Direction, subject: &Subject, places: &Places) -> Step {
    let place = |file: Option<&Path>| match file {
        Some(file) => format!("{} config {}", client.as_str(), file.display()),
        None => format!("{} config", client.as_str()),
    };
    let file = match config_file(client) {
        Ok(file) => places.system_path(&file.display().to_string()),
        Err(why) => {
            return Step {
                target: Target::System,
                place: place(None),
                outcome: Outcome::Absent(why),
            };
        }
    };
    let outcome = match Family::detect(places) {
        None => Outcome::Absent("no system store, so no system bundle to point at".to_string()),
        Some(family) => outcome(client, direction, family.bundle(), &file, subject, places)
            .unwrap_or_else(Outcome::Failed),
    };
    Step {
        target: Target::System,
        place: place(Some(&file)),
        outcome,
    }
}

fn outcome(
    client: Client,
    direction: Direction,
    bundle: &str,
    file: &Path,
    subject: &Subject,
    places: &Places,
) -> Result<Outcome, InstallError> {
    let io_error = |error: io::Error| InstallError::Io {
        path: file.to_path_buf(),
        error,
    };
    let existing = match fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error(error)),
    };
    let text = existing.clone().unwrap_or_default();
    let folder = file.parent().unwrap_or(Path::new("/"));
    let needs_root = || Outcome::NeedsRoot {
        what: format!("writing {}", file.display()),
        command: root_command(direction, Target::System, subject, places),
    };
    // A missing folder is made in its parent.
    let writable_here = |dir: &Path| match dir.parent() {
        Some(parent) if !dir.exists() => super::writable(parent),
        _ => super::writable(dir),
    };
    match direction {
        Direction::Install => {
            if without_block(&text).is_some() {
                return Ok(Outcome::Unchanged(format!("already points at {bundle}")));
            }
            if let Some(set) = set_elsewhere(&text, client.options()) {
                let note = format!("left as it is: it sets {set} already");
                return Ok(if set.ends_with(&format!("= {bundle}")) {
                    Outcome::Unchanged(format!("{note} (the system bundle)"))
                } else {
                    Outcome::Skipped(format!(
                        "{note}, not the system bundle {bundle}: {} trusts Porter's CA only if \
                         that file holds it",
                        client.as_str()
                    ))
                });
            }
            // One folder at most is made (npm's PREFIX/etc), so uninstall can take it back.
            if !folder.parent().is_some_and(Path::is_dir) {
                return Ok(Outcome::Absent(format!(
                    "no folder {} for {}",
                    folder.parent().unwrap_or(folder).display(),
                    file.display()
                )));
            }
            if !writable_here(folder) {
                return Ok(needs_root());
            }
            let created = match (&existing, folder.is_dir()) {
                (Some(_), _) => "",
                (None, true) => CREATED_FILE,
                (None, false) => CREATED_FOLDER,
            };
            if created == CREATED_FOLDER {
                fs::create_dir(folder).map_err(io_error)?;
            }
            let mode = fs::metadata(file).ok();
            super::env::write_atomic_like(
                file,
                with_block(client, &text, bundle, created).as_bytes(),
                mode.as_ref().map(|m| (m.mode() & 0o7777, m.uid(), m.gid())),
            )
            .map_err(io_error)?;
            Ok(Outcome::Done(format!(
                "{} ({} {})",
                client.lines(bundle, "[global]").trim_end(),
                if created.is_empty() {
                    "added to"
                } else {
                    "wrote"
                },
                file.display()
            )))
        }
        Direction::Uninstall => {
            let Some((rest, created)) = without_block(&text) else {
                return Ok(Outcome::Unchanged("not installed".to_string()));
            };
            if !super::writable(folder) {
                return Ok(needs_root());
            }
            if !created.is_empty() && rest.trim().is_empty() {
                fs::remove_file(file).map_err(io_error)?;
                // Only when empty: anything else put there since stays.
                if created == CREATED_FOLDER && fs::remove_dir(folder).is_ok() {
                    return Ok(Outcome::Done(format!(
                        "removed {} and its folder",
                        file.display()
                    )));
                }
                return Ok(Outcome::Done(format!("removed {}", file.display())));
            }
            let meta = fs::metadata(file).map_err(io_error)?;
            super::env::write_atomic_like(
                file,
                rest.as_bytes(),
                Some((meta.mode() & 0o7777, meta.uid(), meta.gid())),
            )
            .map_err(io_error)?;
            Ok(Outcome::Done(format!(
                "removed Porter's lines from {}",
                file.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

    #[test]
    fn pip_lines_go_into_the_existing_global_section_and_come_out_exactly() {
        let before = "# site settings\n[global]\ntimeout = 60\n\n[install]\nno-compile = true\n";
        let after = with_block(Client::Pip, before, BUNDLE, "");
        assert_eq!(after.matches("[global]").count(), 1, "{after}");
        let global = after.find("[global]").unwrap();
        assert!(
            after[global..].starts_with(&format!("[global]\n{BEGIN}\ncert = {BUNDLE}\n{END}\n"))
        );
        assert_eq!(without_block(&after), Some((before.to_string(), "")));
        assert_eq!(set_elsewhere(&after, Client::Pip.options()), None);
    }

    #[test]
    fn a_created_file_says_so_and_another_cert_is_seen_in_any_section() {
        let after = with_block(Client::Pip, "", BUNDLE, CREATED_FILE);
        assert!(
            after.starts_with(&format!("{BEGIN}{CREATED_FILE}\n[global]\n")),
            "{after}"
        );
        assert_eq!(without_block(&after), Some((String::new(), CREATED_FILE)));
        assert_eq!(
            set_elsewhere("[install]\nCert: /opt/ca.pem\n", Client::Pip.options()),
            Some("cert = /opt/ca.pem".to_string())
        );
        assert_eq!(
            set_elsewhere("; cafile=/x\nca[]=PEM\n", Client::Npm.options()),
            Some("ca[] = PEM".to_string())
        );
    }

    #[test]
    fn npm_lines_are_appended_and_a_file_without_a_final_newline_gets_one() {
        let after = with_block(Client::Npm, "registry=https://r.example/", BUNDLE, "");
        assert_eq!(
            after,
            format!("registry=https://r.example/\n{BEGIN}\ncafile={BUNDLE}\n{END}\n")
        );
        assert_eq!(
            without_block(&after).map(|(rest, _)| rest),
            Some("registry=https://r.example/\n".to_string())
        );
        assert_eq!(without_block("cafile=/x\n"), None);
    }
}
