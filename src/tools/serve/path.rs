//! From a request target to a path under `--root`, and nowhere else.
//!
//! ```text
//!  target ─> path part (no query, no scheme://authority) ─> percent-decode once ─> NUL? 400
//!         ─> split on '/', drop "" and ".", ".." pops (past the root: 400) ─> root-relative path
//!         ─> canonicalise root/relative (symlinks resolved) ─> must still start with the root: 403
//! ```
//! Decoding happens once, before normalising, so `%2e%2e` and `%2F` are plain `..` and `/` by the
//! time dot segments are removed, and a double-encoded `%252e` stays a literal `%2e` file name. The
//! final check on the canonical path is what stops symlinks that lead outside the root.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// Why a target names no file under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A NUL byte, which no file name can hold (400).
    Nul,
    /// `..` above the root (400).
    AboveRoot,
    /// Resolves outside the root through a symlink (403).
    OutsideRoot,
    /// No such file (404).
    NotFound,
    /// The file system refused to look (403).
    Denied,
}

impl PathError {
    pub fn status(self) -> u16 {
        match self {
            PathError::Nul | PathError::AboveRoot => 400,
            PathError::OutsideRoot | PathError::Denied => 403,
            PathError::NotFound => 404,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PathError::Nul => "the path contains a nul byte",
            PathError::AboveRoot => "the path climbs above the served folder",
            PathError::OutsideRoot => "the path leads outside the served folder",
            PathError::NotFound => "no such file",
            PathError::Denied => "the file cannot be read",
        }
    }
}

/// A normalised, root-relative request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Decoded segments, without empty, `.` or `..` ones.
    pub segments: Vec<Vec<u8>>,
    /// Whether the decoded path ended in `/` (a directory URL).
    pub trailing_slash: bool,
}

impl RequestPath {
    /// Decodes and normalises the path part of a target (`/a/b`, no query).
    pub fn parse(path: &str) -> Result<RequestPath, PathError> {
        let decoded: Vec<u8> = percent_decode_str(path).collect();
        if decoded.contains(&0) {
            return Err(PathError::Nul);
        }
        let mut segments: Vec<Vec<u8>> = Vec::new();
        for segment in decoded.split(|&b| b == b'/') {
            match segment {
                b"" | b"." => {}
                b".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::AboveRoot);
                    }
                }
                name => segments.push(name.to_vec()),
            }
        }
        Ok(RequestPath {
            segments,
            trailing_slash: decoded.ends_with(b"/"),
        })
    }

    /// The path relative to the root (empty for the root itself).
    pub fn relative(&self) -> PathBuf {
        self.segments.iter().map(|s| OsStr::from_bytes(s)).collect()
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }
}

/// The path part of a request target: origin-form as is; absolute-form without scheme and authority;
/// never the query or fragment.
pub fn target_path(target: &str) -> &str {
    let without_authority = match target.find("://") {
        Some(i) if !target[..i].contains('/') => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        _ => target,
    };
    let end = without_authority
        .find(['?', '#'])
        .unwrap_or(without_authority.len());
    &without_authority[..end]
}

/// The query of a target, if any.
pub fn target_query(target: &str) -> Option<&str> {
    let query = target.split_once('?')?.1;
    Some(query.split('#').next().unwrap_or(query))
}

/// Resolves `relative` under the canonical `root`, following symlinks, and checks the result stays
/// inside. Returns the canonical path.
pub fn resolve(root: &Path, relative: &Path) -> Result<PathBuf, PathError> {
    let canonical = root
        .join(relative)
        .canonicalize()
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => PathError::Denied,
            _ => PathError::NotFound,
        })?;
    if canonical.starts_with(root) {
        Ok(canonical)
    } else {
        Err(PathError::OutsideRoot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(path: &str) -> Result<String, PathError> {
        RequestPath::parse(path).map(|p| p.relative().to_string_lossy().into_owned())
    }

    #[test]
    fn normalises_dot_segments() {
        assert_eq!(rel("/"), Ok(String::new()));
        assert_eq!(rel("/a/./b//c"), Ok("a/b/c".into()));
        assert_eq!(rel("/a/b/../c"), Ok("a/c".into()));
        assert_eq!(rel("/a/.."), Ok(String::new()));
        assert_eq!(rel("/hello%20world.txt"), Ok("hello world.txt".into()));
        assert!(RequestPath::parse("/docs/").unwrap().trailing_slash);
        assert!(!RequestPath::parse("/docs").unwrap().trailing_slash);
    }

    #[test]
    fn refuses_to_climb_out_however_encoded() {
        for attack in [
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/..%2fetc%2fpasswd",
            "/a%2F..%2F..%2Fetc/passwd",
        ] {
            assert_eq!(rel(attack), Err(PathError::AboveRoot), "{attack}");
        }
        assert_eq!(rel("/a%00.txt"), Err(PathError::Nul));
        // Decoded once only: a double-encoded dot is a literal file name, not a parent.
        assert_eq!(rel("/%252e%252e/x"), Ok("%2e%2e/x".into()));
        // A backslash is an ordinary byte in a Unix file name.
        assert_eq!(rel("/..\\x"), Ok("..\\x".into()));
    }

    #[test]
    fn every_prefix_of_an_attack_stays_inside() {
        let attack = "/a/%2e%2e/%2e%2e/%2e%2e/etc/passwd";
        for end in 0..=attack.len() {
            if let Ok(path) = RequestPath::parse(&attack[..end]) {
                let relative = path.relative();
                assert!(
                    relative
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "{relative:?}"
                );
            }
        }
    }

    #[test]
    fn splits_targets() {
        assert_eq!(target_path("/a/b?x=1#f"), "/a/b");
        assert_eq!(target_path("http://h:8080/a?q"), "/a");
        assert_eq!(target_path("http://h"), "/");
        assert_eq!(target_path("/x?u=http://y/z"), "/x");
        assert_eq!(target_query("/getlogs?limit=5"), Some("limit=5"));
        assert_eq!(target_query("/getlogs"), None);
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().canonicalize().unwrap();
        std::fs::write(root_path.join("ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink(outside.path(), root_path.join("out")).unwrap();
        std::os::unix::fs::symlink("ok.txt", root_path.join("alias.txt")).unwrap();
        assert_eq!(
            resolve(&root_path, Path::new("out/secret")),
            Err(PathError::OutsideRoot)
        );
        assert_eq!(
            resolve(&root_path, Path::new("alias.txt")),
            Ok(root_path.join("ok.txt"))
        );
        assert_eq!(
            resolve(&root_path, Path::new("missing")),
            Err(PathError::NotFound)
        );
    }
}
