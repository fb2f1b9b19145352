//! What the file server never serves, even when it lies under `--root`: the server's own state files
//! and, unless `--allow-dotfiles`, anything whose path has a segment starting with a dot.
//!
//! The state files are the cookies file (a visitor id is as good as a login: the cookie is the
//! identity) and the event log (every client address), with every sibling the server writes beside
//! them: `.NAME.tmp-PID` while saving, `NAME.corrupt-TIME` when moved aside, `NAME.1` when rotated.
//! They are matched on the *resolved* path (symlinks followed), so a link to them inside the root is
//! hidden too, and they answer 404, as if they were not there, whatever `--allow-dotfiles` says.
//!
//! ```text
//!  request segments ─ one starts with "." ─> 404   (unless --allow-dotfiles)
//!  resolved path ──── inside root, a segment starts with "." ─> 404   (unless --allow-dotfiles)
//!                └─── NAME, NAME.*, .NAME.* beside a state file ─> 404   (always)
//! ```

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One state file: its folder (canonical) and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StateFile {
    dir: PathBuf,
    name: Vec<u8>,
}

impl StateFile {
    /// `path` made absolute through its (existing) folder; `None` if the folder cannot be resolved.
    fn new(path: &Path) -> Option<StateFile> {
        let name = path.file_name()?.as_bytes().to_vec();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Some(StateFile {
            dir: dir.canonicalize().ok()?,
            name,
        })
    }

    /// Whether `name` in `dir` is this file or a sibling the server writes beside it.
    fn covers(&self, dir: &Path, name: &[u8]) -> bool {
        if dir != self.dir {
            return false;
        }
        let starts = |prefix: &[u8], suffix: &[u8]| {
            name.len() > prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name[prefix.len()..].starts_with(&self.name)
                && name[prefix.len() + self.name.len()..].starts_with(suffix)
        };
        name == self.name.as_slice() || starts(b"", b".") || starts(b".", b".")
    }
}

/// The hiding rules of one server.
#[derive(Debug, Clone, Default)]
pub struct Hidden {
    state: Vec<StateFile>,
    allow_dotfiles: bool,
}

impl Hidden {
    /// Rules for these state files. Call it after they exist, so their folders resolve.
    pub fn new(state_files: &[&Path], allow_dotfiles: bool) -> Hidden {
        Hidden {
            state: state_files
                .iter()
                .filter_map(|p| StateFile::new(p))
                .collect(),
            allow_dotfiles,
        }
    }

    /// The state files whose folder is `root` or lies inside it (for the start-up warning).
    pub fn inside(&self, root: &Path) -> Vec<PathBuf> {
        self.state
            .iter()
            .filter(|s| s.dir.starts_with(root))
            .map(|s| s.dir.join(OsStr::from_bytes(&s.name)))
            .collect()
    }

    /// Whether the decoded request segments name something hidden (a dot segment).
    pub fn hides_segments(&self, segments: &[Vec<u8>]) -> bool {
        !self.allow_dotfiles && segments.iter().any(|s| s.starts_with(b"."))
    }

    /// Whether the resolved, canonical `path` under the canonical `root` is hidden.
    pub fn hides(&self, root: &Path, path: &Path) -> bool {
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name())
            && self.state.iter().any(|s| s.covers(dir, name.as_bytes()))
        {
            return true;
        }
        if self.allow_dotfiles {
            return false;
        }
        path.strip_prefix(root).is_ok_and(|relative| {
            relative
                .iter()
                .any(|segment| segment.as_bytes().starts_with(b"."))
        })
    }

    /// Whether an entry `name` of the folder `dir` (canonical) is left out of a listing.
    pub fn hides_entry(&self, dir: &Path, name: &OsStr) -> bool {
        (!self.allow_dotfiles && name.as_bytes().starts_with(b"."))
            || self.state.iter().any(|s| s.covers(dir, name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_and_their_siblings_are_hidden_dotfiles_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let cookies = root.join("cookies.json");
        let hidden = Hidden::new(&[&cookies, &root.join("server.log")], true);
        for name in [
            "cookies.json",
            ".cookies.json.tmp-42",
            "cookies.json.corrupt-1700000000",
            "server.log",
            "server.log.1",
        ] {
            assert!(hidden.hides(&root, &root.join(name)), "{name}");
            assert!(hidden.hides_entry(&root, OsStr::new(name)), "{name}");
        }
        for name in ["cookies.jsonx", "my-cookies.json", "server.logs", "a.txt"] {
            assert!(!hidden.hides(&root, &root.join(name)), "{name}");
        }
        assert!(!hidden.hides(&root, &root.join("sub/cookies.json")));
        assert!(!hidden.hides(&root, &root.join(".git/config")), "allowed");

        let strict = Hidden::new(&[&cookies], false);
        assert!(strict.hides(&root, &root.join(".git/config")));
        assert!(strict.hides(&root, &root.join("a/.env")));
        assert!(!strict.hides(&root, &root.join("a/b.txt")));
        assert!(strict.hides_segments(&[b"a".to_vec(), b".hidden".to_vec()]));
        assert!(!hidden.hides_segments(&[b".hidden".to_vec()]));
        assert_eq!(strict.inside(&root), vec![cookies.clone()]);
        assert!(strict.inside(&root.join("sub")).is_empty());
    }
}
