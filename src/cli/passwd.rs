//! `porter passwd USER`: a bcrypt line for `--auth-file`, as `htpasswd -B` writes one
//! (`USER:$2y$10$...`), printed or (with `--file`) put in the file in place of the user's old line.
//!
//! The password comes from stdin: typed at a prompt with the echo off (twice, to catch a typo) when
//! stdin is a terminal, else the first line of whatever is piped in. It is never an argument, which
//! `ps` and the shell history would show. The file is replaced atomically: a temporary file beside
//! it, created 0600, written and fsynced, renamed over it, and the folder fsynced, so a crash leaves
//! the old file or the new one and a running proxy's reload never reads half a file. A file that
//! existed keeps its mode (and, when root runs the command, its owner and group): a proxy running as
//! its own user that could read the old file can read the new one. Only a new file is 0600.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Args;

/// Flags of `porter passwd`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The user name (no `:`).
    #[arg(value_name = "USER")]
    pub user: String,

    /// Add the user's line to this auth file, or replace the line it has (a new file is made 0600; an
    /// existing one keeps its mode, and its owner when run as root).
    /// Without it, the line is printed.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// bcrypt's cost: each step doubles the time a check takes (10: ~50-100 ms of CPU).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31), value_name = "N")]
    pub cost: u32,
}

/// Why `porter passwd` failed.
#[derive(Debug)]
pub enum PasswdError {
    BadUser(String),
    EmptyPassword,
    Mismatch,
    Read(io::Error),
    Hash(bcrypt::BcryptError),
    File { path: PathBuf, error: io::Error },
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::BadUser(user) => {
                write!(
                    f,
                    "{user:?} cannot be a user name (empty, or it holds a `:`)"
                )
            }
            PasswdError::EmptyPassword => f.write_str("the password is empty"),
            PasswdError::Mismatch => f.write_str("the two passwords differ; nothing was written"),
            PasswdError::Read(e) => write!(f, "cannot read the password: {e}"),
            PasswdError::Hash(e) => write!(f, "cannot hash the password: {e}"),
            PasswdError::File { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for PasswdError {}

/// What became of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Added,
    Replaced,
}

impl PasswdArgs {
    /// Reads the password, hashes it, and prints the line or puts it in the file; returns what to
    /// print.
    pub fn run(self) -> Result<String, PasswdError> {
        if self.user.is_empty() || self.user.contains(':') || self.user.trim() != self.user {
            return Err(PasswdError::BadUser(self.user));
        }
        let password = read_password(&self.user)?;
        if password.len() > BCRYPT_MAX_BYTES {
            eprintln!(
                "warning: the password is {} bytes long; bcrypt uses only its first {BCRYPT_MAX_BYTES}, so any \
                 password with the same first {BCRYPT_MAX_BYTES} bytes will be accepted",
                password.len()
            );
        }
        let line = bcrypt_line(&self.user, &password, self.cost)?;
        match &self.file {
            None => Ok(format!("{line}\n")),
            Some(path) => {
                let updated =
                    upsert(path, &self.user, &line).map_err(|error| PasswdError::File {
                        path: path.clone(),
                        error,
                    })?;
                let verb = match updated {
                    Updated::Added => "added",
                    Updated::Replaced => "replaced the password of",
                };
                eprintln!("{verb} user {} in {}", self.user, path.display());
                Ok(String::new())
            }
        }
    }
}

/// bcrypt reads at most this many bytes of a password and ignores the rest.
pub const BCRYPT_MAX_BYTES: usize = 72;

/// `USER:$2y$COST$...`: `$2y$`, as `htpasswd -B` writes, which every bcrypt reader takes.
pub fn bcrypt_line(user: &str, password: &str, cost: u32) -> Result<String, PasswdError> {
    let parts = bcrypt::hash_with_result(password, cost).map_err(PasswdError::Hash)?;
    Ok(format!(
        "{user}:{}",
        parts.format_for_version(bcrypt::Version::TwoY)
    ))
}

/// The password from a prompt without echo (stdin a terminal) or stdin's first line.
fn read_password(user: &str) -> Result<String, PasswdError> {
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt(&format!("password for {user}: "))?;
        let again = prompt("again: ")?;
        if first != again {
            return Err(PasswdError::Mismatch);
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(PasswdError::Read)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    Ok(password)
}

/// Asks on stderr and reads a line from the terminal with its echo off, restoring it after.
fn prompt(text: &str) -> Result<String, PasswdError> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = io::stdin();
    eprint!("{text}");
    let _ = io::stderr().flush();
    let saved = tcgetattr(&stdin).map_err(|e| PasswdError::Read(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).map_err(|e| PasswdError::Read(e.into()))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.map_err(PasswdError::Read)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Puts `line` in the file at `path` in place of `user`'s line (or at the end), atomically.
pub fn upsert(path: &Path, user: &str, line: &str) -> io::Result<Updated> {
    let (old, old_meta) = match fs::read_to_string(path) {
        Ok(text) => (text, Some(fs::metadata(path)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(e),
    };
    let mut updated = Updated::Added;
    let mut text = String::with_capacity(old.len() + line.len() + 1);
    for existing in old.lines() {
        let is_user = existing
            .trim()
            .split_once(':')
            .is_some_and(|(name, _)| name == user);
        if !is_user {
            text.push_str(existing);
            text.push('\n');
        } else if updated == Updated::Added {
            // The first line of the user becomes the new one; any later duplicate goes.
            text.push_str(line);
            text.push('\n');
            updated = Updated::Replaced;
        }
    }
    if updated == Updated::Added {
        text.push_str(line);
        text.push('\n');
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "auth".to_string());
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        if let Some(meta) = &old_meta {
            // The new file is created owned by the effective user, so an owner of 0 means root runs
            // this, the only user that may give the file back to its old owner and group.
            if file.metadata()?.uid() == 0 {
                std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
            }
            // After the chown, which may clear set-id bits.
            file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.map(|()| updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn upsert_adds_replaces_and_keeps_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        fs::write(&path, "# team\nbob:old\nalice:one\nbob:dup\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(upsert(&path, "bob", "bob:new").unwrap(), Updated::Replaced);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# team\nbob:new\nalice:one\n"
        );
        assert_eq!(upsert(&path, "carol", "carol:x").unwrap(), Updated::Added);
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .ends_with("alice:one\ncarol:x\n")
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn regression_upsert_keeps_the_mode_of_a_replaced_file_and_makes_a_new_one_0600() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        let shared = dir.path().join("shared");
        fs::write(&shared, "bob:old\n").unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o640)).unwrap();
        let owner = fs::metadata(&shared).unwrap().uid();
        assert_eq!(
            upsert(&shared, "bob", "bob:new").unwrap(),
            Updated::Replaced
        );
        assert_eq!(mode(&shared), 0o640, "a replaced line keeps the mode");
        assert_eq!(upsert(&shared, "carol", "carol:x").unwrap(), Updated::Added);
        assert_eq!(mode(&shared), 0o640, "an added line keeps the mode");
        assert_eq!(fs::metadata(&shared).unwrap().uid(), owner);
        assert_eq!(fs::read_to_string(&shared).unwrap(), "bob:new\ncarol:x\n");

        let fresh = dir.path().join("fresh");
        assert_eq!(upsert(&fresh, "bob", "bob:x").unwrap(), Updated::Added);
        assert_eq!(mode(&fresh), 0o600, "a new file is private");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary file left"
        );
    }

    #[test]
    fn the_line_is_htpasswd_bcrypt_and_verifies() {
        let line = bcrypt_line("alice", "s3cret", 4).unwrap();
        let (user, hash) = line.split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
    }
}
