//! The modes of what the proxy writes, run by hand with the usual umask 022: the cache folder and
//! everything in it the owner's alone, the access log 0640, and a warning for a cache folder other
//! users can already read.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::util::*;

/// Runs porter through `sh` with umask 022, as a shell would by default.
const UMASK_022: [&str; 3] = ["sh", "-c", "umask 022; exec \"$0\" \"$@\""];

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn cacheable_origin() -> Origin {
    Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[("Cache-Control", "max-age=300")]),
            b"secret body".to_vec(),
        )
    })
}

#[test]
fn regression_cache_entries_and_access_log_are_not_world_readable_under_umask_022() {
    let origin = cacheable_origin();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let log = dir.path().join("access.log");
    let porter = Porter::start_under(
        &UMASK_022,
        &[
            "proxy",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--access-log",
            log.to_str().unwrap(),
        ],
        None,
    );
    let url = origin.url("/private?token=1");
    assert_eq!(proxy_get(porter.addr, &url, &[]).status, 200);
    // The entry is renamed into place once the body is stored.
    let mut entries = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            entries = std::fs::read_dir(&cache)
                .unwrap()
                .flatten()
                .filter(|d| d.file_name().len() == 2)
                .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
                .map(|e| e.path())
                .collect();
            !entries.is_empty()
        }),
        "an entry was stored"
    );
    assert!(eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("/private"))
    }));
    assert_eq!(mode(&cache), 0o700, "the cache folder");
    for sub in std::fs::read_dir(&cache).unwrap().flatten() {
        let path = sub.path();
        if path.is_dir() {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
        }
    }
    for entry in &entries {
        assert_eq!(mode(entry), 0o600, "{}", entry.display());
    }
    assert_eq!(mode(&log), 0o640, "the access log");
    assert!(
        !porter.logs().contains("other users can read"),
        "{}",
        porter.logs()
    );
}

#[test]
fn regression_an_existing_cache_folder_other_users_can_read_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&cache)
        .unwrap();
    // Entries of an earlier run: a folder in use keeps the mode its operator gave it, warned about.
    std::fs::create_dir(cache.join("ab")).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let porter = Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
    ]);
    let logs = porter.logs();
    assert!(
        logs.contains(&format!(
            "cache folder {} has mode 0755: other users can read",
            cache.display()
        )) && logs.contains(&format!("chmod -R go-rwx {}", cache.display())),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("log file {} has mode 0644", log.display()))
            && logs.contains(&format!("chmod o-rwx {}", log.display())),
        "{logs}"
    );
    // Existing modes are the operator's: warned about, not changed.
    assert_eq!(mode(&cache), 0o755);
}

/// A fresh clone's `cache/` is made 0755 by git around its `.gitignore`: the README's first command
/// ran into the open-folder warning. A folder that holds nothing of Porter's yet is narrowed instead.
#[test]
fn regression_a_fresh_clones_cache_folder_is_narrowed_not_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join(".gitignore"), "*\n!.gitignore\n").unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let porter = Porter::start(&["proxy", "--cache-dir", cache.to_str().unwrap()]);
    let logs = porter.logs();
    assert!(!logs.contains("other users can read"), "{logs}");
    assert!(logs.contains("narrowed from mode 0755 to 0700"), "{logs}");
    assert_eq!(mode(&cache), 0o700);
}
