//! The modes of the files and folders Porter writes, whatever the umask: the cache holds decrypted
//! HTTPS bodies and every URL with its query string, so its folder and everything in it is the
//! owner's alone (0700 folders, 0600 files); logs name clients and URLs, so they are 0640 (the owner
//! writes, a log reader's group reads, other users nothing).
//!
//! The modes are given at creation (`DirBuilderExt::mode`, `OpenOptionsExt::mode`), so no file is
//! ever wider for a moment; a umask can only narrow them further. A file written to a temporary name
//! and renamed into place keeps the temporary file's mode, so those are created here too. Folders and
//! logs that already exist keep their modes (the operator may have chosen them), but a start-up
//! warning names any that other users can read, with the `chmod` that fixes it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Folders in the cache folder, and the cache folder itself when Porter creates it.
pub const PRIVATE_DIR: u32 = 0o700;
/// Files in the cache folder.
pub const PRIVATE_FILE: u32 = 0o600;
/// Log files: the access log, `porter serve`'s event log and cookies file, `porter fetch`'s log.
pub const LOG_FILE: u32 = 0o640;

/// Creates `dir` and any missing parents as 0700 folders; existing ones are left as they are.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// Creates a new file (failing if it exists) for writing, 0600.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
}

/// Creates a new file (failing if it exists) for reading and writing, 0600: a cache entry's
/// temporary file, whose handle the requests that read it while it is written share.
pub fn create_private_rw_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
}

/// Options that open a log for appending, creating it as 0640 if it does not exist.
pub fn log_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true).append(true).mode(LOG_FILE);
    options
}

/// The permission bits of `path`, if it exists.
fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.mode() & 0o7777)
}

/// Keeps the cache folder to its owner: every stored body and URL is below it. A folder that holds
/// nothing of Porter's yet (only dotfiles, as a fresh clone's `cache/` with its `.gitignore`, which
/// git creates 0755) is narrowed to 0700 and logged; one that holds entries keeps its mode, since the
/// operator may have chosen it, and is warned about with the `chmod` that fixes it.
pub fn secure_cache_dir(dir: &Path) {
    let Some(mode) = mode_of(dir).filter(|mode| mode & 0o077 != 0) else {
        return;
    };
    if holds_only_dotfiles(dir)
        && std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR)).is_ok()
    {
        log::info!(
            "cache folder {} narrowed from mode {mode:04o} to 0700: it held no entries yet",
            dir.display()
        );
        return;
    }
    log::warn!(
        "cache folder {} has mode {mode:04o}: other users can read cached bodies and URLs; \
         run `chmod -R go-rwx {}`",
        dir.display(),
        dir.display()
    );
}

/// Whether every name in `dir` starts with a dot (an empty folder included).
fn holds_only_dotfiles(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .map(|entry| entry.map(|e| e.file_name().as_encoded_bytes().starts_with(b".")))
            .all(|dot| dot.unwrap_or(false))
    })
}

/// Warns when an opened log file is readable by other users.
pub fn warn_if_log_is_open(file: &File, path: &Path) {
    let Ok(meta) = file.metadata() else { return };
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        log::warn!(
            "log file {} has mode {mode:04o}: other users can read it; run `chmod o-rwx {}`",
            path.display(),
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_folders_and_files_get_their_modes() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        create_private_dir_all(&nested).unwrap();
        assert_eq!(mode_of(&root.path().join("a")), Some(0o700));
        assert_eq!(mode_of(&nested), Some(0o700));
        let file = nested.join("f");
        drop(create_private_file(&file).unwrap());
        assert_eq!(mode_of(&file), Some(0o600));
        assert!(create_private_file(&file).is_err(), "never reuses a file");
        let log = root.path().join("log");
        drop(log_options().open(&log).unwrap());
        // A umask may narrow the mode; it never widens it.
        assert_eq!(mode_of(&log).unwrap() & !LOG_FILE, 0);
    }

    #[test]
    fn regression_a_fresh_clones_cache_folder_is_narrowed_and_one_with_entries_is_left() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        std::fs::write(fresh.join(".gitignore"), "*\n").unwrap();
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure_cache_dir(&fresh);
        assert_eq!(mode_of(&fresh), Some(0o700));

        let used = root.path().join("used");
        std::fs::create_dir_all(used.join("ab")).unwrap();
        std::fs::set_permissions(&used, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure_cache_dir(&used);
        assert_eq!(mode_of(&used), Some(0o755));
    }
}
