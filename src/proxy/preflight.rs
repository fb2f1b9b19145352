//! Checks made once before the proxy starts serving, whose failure is a configuration mistake the
//! user must hear about (exit 2) rather than a warning scrolled past: a cache folder that cannot be
//! used, an access log that cannot be opened. Later failures (a full disk) still degrade the cache
//! to pass-through instead of stopping the proxy.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why the proxy did not start.
#[derive(Debug)]
pub enum StartError {
    /// `--cache-dir` cannot be created, is not a folder, or cannot be written.
    CacheDir { dir: PathBuf, why: String },
    /// `--access-log` cannot be opened for appending.
    AccessLog(io::Error),
    /// Binding, threads and other I/O.
    Io(io::Error),
}

impl StartError {
    /// The process exit code: 2 for a configuration the user must fix, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::CacheDir { .. } | StartError::AccessLog(_) => 2,
            StartError::Io(_) => 1,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::CacheDir { dir, why } => write!(
                f,
                "cannot use {} as the cache folder: {why}. Fix --cache-dir, or run with --no-cache \
                 to proxy without a cache",
                dir.display()
            ),
            StartError::AccessLog(e) => write!(f, "{e}"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        StartError::Io(e)
    }
}

/// Checks that `dir` is a folder the proxy can write in, creating it if it does not exist.
pub fn check_cache_dir(dir: &Path) -> Result<(), StartError> {
    let fail = |why: String| StartError::CacheDir {
        dir: dir.to_path_buf(),
        why,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(fail("it exists and is not a folder".into()));
    }
    if dir.is_dir() {
        crate::perms::secure_cache_dir(dir);
    }
    crate::perms::create_private_dir_all(dir)
        .map_err(|e| fail(format!("cannot create it ({e})")))?;
    let probe = dir.join(format!(".porter-write-test-{}", std::process::id()));
    crate::perms::create_private_file(&probe)
        .map_err(|e| fail(format!("cannot write in it ({e})")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_place_of_the_cache_folder_is_refused_with_the_no_cache_hint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        std::fs::write(&file, "not a folder").unwrap();
        let error = check_cache_dir(&file).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let text = error.to_string();
        assert!(
            text.contains("not a folder") && text.contains("--no-cache"),
            "{text}"
        );
        assert!(check_cache_dir(&dir.path().join("new/nested")).is_ok());
        assert!(check_cache_dir(&file.join("below-a-file")).is_err());
    }
}
