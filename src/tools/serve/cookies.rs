//! Visitors: the `porter_visitor` cookie, each visitor's visit count and last visit, and their
//! persistence in `--cookies` as readable JSON.
//!
//! Ids are 128 random bits from the operating system, in hex: a client cannot guess another's id,
//! and an id the store does not know is treated as no cookie at all, so forging one gains nothing.
//!
//! ```text
//!  load ──> memory (HashMap, dirty flag) ──every --save-every, and at shutdown──> save
//!  save: serialise ─> .NAME.tmp-PID ─> fsync ─> rename over NAME ─> fsync the folder
//! ```
//! A crash therefore loses at most one save interval, and never leaves a half-written file. A file
//! that does not parse is moved aside to `NAME.corrupt-<unix time>` with a warning, never overwritten.
//! Minting is rate-limited per client address by the caller ([`super::limits`]); the store itself
//! caps the number of visitors, forgetting the longest-unseen ones first.

use crate::runtime::{Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use crate::http::Headers;
use crate::timefmt::rfc3339;

/// The cookie's name.
pub const COOKIE_NAME: &str = "porter_visitor";
/// The most visitors remembered; beyond it the longest-unseen are forgotten.
const MAX_VISITORS: usize = 100_000;

/// What the store knows about one visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    pub visits: u64,
    /// RFC 3339 UTC, like every time Porter writes.
    pub first_visit: String,
    pub last_visit: String,
}

/// The file's shape: `{"visitors": {"<id>": {...}}}`, sorted by id so diffs stay small.
#[derive(Serialize, Deserialize)]
struct StoreFile<V> {
    visitors: V,
}

/// Why the store could not be loaded or saved.
#[derive(Debug)]
pub enum StoreError {
    Read(PathBuf, io::Error),
    Write(PathBuf, io::Error),
    MoveAside(PathBuf, io::Error),
    Random(getrandom::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Read(p, e) => write!(f, "cannot read cookies file {}: {e}", p.display()),
            StoreError::Write(p, e) => write!(f, "cannot write cookies file {}: {e}", p.display()),
            StoreError::MoveAside(p, e) => {
                write!(
                    f,
                    "cannot move corrupt cookies file {} aside: {e}",
                    p.display()
                )
            }
            StoreError::Random(e) => write!(f, "no random bytes for a visitor id: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

#[derive(Default)]
struct State {
    visitors: HashMap<String, Visitor>,
    dirty: bool,
}

/// The visitors, shared by every worker.
pub struct VisitorStore {
    path: PathBuf,
    state: Mutex<State>,
    /// One save at a time (the periodic one and the final one may meet).
    saving: Mutex<()>,
}

impl VisitorStore {
    /// Loads `path`; a missing file is an empty store, a corrupt one is moved aside. Either way the
    /// store starts unsaved (dirty), so the caller's first save proves the file can be written.
    pub fn load(path: &Path) -> Result<VisitorStore, StoreError> {
        remove_unfinished_saves(path);
        let (visitors, dirty) = match fs::read(path) {
            Ok(bytes) => parse_or_move_aside(path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (HashMap::new(), true),
            Err(e) => return Err(StoreError::Read(path.to_path_buf(), e)),
        };
        log::info!("{} visitors loaded from {}", visitors.len(), path.display());
        Ok(VisitorStore {
            path: path.to_path_buf(),
            state: Mutex::new(State { visitors, dirty }),
            saving: Mutex::new(()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.state().visitors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn knows(&self, id: &str) -> bool {
        self.state().visitors.contains_key(id)
    }

    /// Counts a visit by a known visitor; returns the visit count, or `None` if the id is unknown.
    pub fn visit(&self, id: &str, now: SystemTime) -> Option<u64> {
        let mut state = self.state();
        let visitor = state.visitors.get_mut(id)?;
        // A crafted file may hold u64::MAX: stay there rather than wrap to 0 (or panic).
        visitor.visits = visitor.visits.saturating_add(1);
        visitor.last_visit = rfc3339(now);
        let visits = visitor.visits;
        state.dirty = true;
        Some(visits)
    }

    /// Creates a visitor with its first visit counted; returns the new id.
    pub fn mint(&self, now: SystemTime) -> Result<String, StoreError> {
        let id = new_id().map_err(StoreError::Random)?;
        let stamp = rfc3339(now);
        let mut state = self.state();
        if state.visitors.len() >= MAX_VISITORS {
            forget_oldest(&mut state.visitors, MAX_VISITORS / 100);
        }
        state.visitors.insert(
            id.clone(),
            Visitor {
                visits: 1,
                first_visit: stamp.clone(),
                last_visit: stamp,
            },
        );
        state.dirty = true;
        Ok(id)
    }

    pub fn get(&self, id: &str) -> Option<Visitor> {
        self.state().visitors.get(id).cloned()
    }

    /// Writes the store if it changed since the last save; returns whether it wrote.
    pub fn save(&self) -> Result<bool, StoreError> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let json = {
            let mut state = self.state();
            if !state.dirty {
                return Ok(false);
            }
            let sorted: BTreeMap<&String, &Visitor> = state.visitors.iter().collect();
            let json = serde_json::to_vec_pretty(&StoreFile { visitors: sorted })
                .map_err(|e| StoreError::Write(self.path.clone(), io::Error::other(e)))?;
            state.dirty = false;
            json
        };
        write_atomically(&self.path, &json).map_err(|e| {
            self.state().dirty = true;
            StoreError::Write(self.path.clone(), e)
        })?;
        Ok(true)
    }
}

/// The visitors in a file's bytes, and whether the file needs writing again (it was moved aside).
fn parse_or_move_aside(
    path: &Path,
    bytes: &[u8],
) -> Result<(HashMap<String, Visitor>, bool), StoreError> {
    match serde_json::from_slice::<StoreFile<HashMap<String, Visitor>>>(bytes) {
        Ok(file) => {
            let total = file.visitors.len();
            let visitors: HashMap<String, Visitor> = file
                .visitors
                .into_iter()
                .filter(|(id, _)| is_valid_id(id))
                .collect();
            if visitors.len() < total {
                log::warn!(
                    "ignoring {} entries of {} that are not valid visitor ids",
                    total - visitors.len(),
                    path.display()
                );
            }
            Ok((visitors, false))
        }
        Err(e) => {
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let mut aside = sibling(path, &format!(".corrupt-{unix}"));
            let mut n = 1;
            while aside.exists() {
                aside = sibling(path, &format!(".corrupt-{unix}-{n}"));
                n += 1;
            }
            fs::rename(path, &aside).map_err(|e| StoreError::MoveAside(path.to_path_buf(), e))?;
            log::warn!(
                "cookies file {} is not valid ({e}); moved it to {} and starting with no visitors",
                path.display(),
                aside.display()
            );
            Ok((HashMap::new(), true))
        }
    }
}

/// `dir/NAME` + suffix, as a path beside the original.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Temporary file in the same folder, fsync, rename over the target, fsync the folder: readers see
/// the old file or the new one, never a mix, and the rename survives a power cut.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        // The temporary file's mode is the one that lands: visitor ids are for the owner and the
        // log readers' group only.
        let mut file = crate::perms::log_options()
            .append(false)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Drops the `count` visitors seen longest ago. RFC 3339 strings of one format sort by time.
fn forget_oldest(visitors: &mut HashMap<String, Visitor>, count: usize) {
    let mut by_age: Vec<(&String, &String)> =
        visitors.iter().map(|(id, v)| (&v.last_visit, id)).collect();
    by_age.sort_unstable();
    let old: Vec<String> = by_age
        .into_iter()
        .take(count.max(1))
        .map(|(_, id)| id.clone())
        .collect();
    for id in old {
        visitors.remove(&id);
    }
}

/// 128 random bits as 32 lowercase hex digits.
pub fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The visitor id in the request's Cookie fields, if one is well formed (RFC 6265 §5.4).
pub fn cookie_id(headers: &Headers) -> Option<&str> {
    headers
        .get_all("cookie")
        .flat_map(|field| field.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|id| is_valid_id(id))
}

/// The Set-Cookie value for a new visitor. No Max-Age: it lasts the browser session.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Lax")
}

/// The thread that saves the store every interval while it has changes.
pub struct Saver {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Saver {
    pub fn start(store: std::sync::Arc<VisitorStore>, every: Duration) -> io::Result<Saver> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("serve-cookies".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if let Err(e) = store.save() {
                        log::warn!("{e}");
                    }
                }
            })?;
        Ok(Saver { stop, thread })
    }

    /// Stops the periodic saves; the caller does the final one.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Removes `.NAME.tmp-PID` files that a killed server left half-written: they were never renamed
/// into place, so nothing in them counts.
fn remove_unfinished_saves(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{name}.tmp-");
    for file in fs::read_dir(dir).into_iter().flatten().flatten() {
        let leftover = file
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix));
        if leftover && fs::remove_file(file.path()).is_ok() {
            log::info!("removed an unfinished save, {}", file.path().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert!(is_valid_id(&a) && is_valid_id(&b));
        assert_ne!(a, b);
        assert!(!is_valid_id("1"));
        assert!(!is_valid_id(&"G".repeat(32)));
    }

    #[test]
    fn finds_the_cookie_among_others() {
        let id = "0123456789abcdef0123456789abcdef";
        let headers: Headers = [
            ("Cookie", "theme=dark; other=1"),
            ("Cookie", &format!("a=b; porter_visitor={id}; c=d")),
        ]
        .into_iter()
        .collect();
        assert_eq!(cookie_id(&headers), Some(id));
        let forged: Headers = [("Cookie", "porter_visitor=42")].into_iter().collect();
        assert_eq!(cookie_id(&forged), None);
    }

    #[test]
    fn visits_survive_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookies.json");
        let store = VisitorStore::load(&path).unwrap();
        assert!(store.save().unwrap(), "a new file is written at once");
        assert!(!store.save().unwrap(), "nothing to save");
        let id = store.mint(SystemTime::now()).unwrap();
        assert_eq!(store.visit(&id, SystemTime::now()), Some(2));
        assert_eq!(store.visit("unknown", SystemTime::now()), None);
        assert!(store.save().unwrap());
        assert!(!store.save().unwrap(), "saved already");
        let again = VisitorStore::load(&path).unwrap();
        assert_eq!(again.get(&id).map(|v| v.visits), Some(2));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookies.json");
        fs::write(&path, b"{\"visitors\": {oops").unwrap();
        let store = VisitorStore::load(&path).unwrap();
        assert!(store.is_empty());
        assert!(!path.exists());
        let aside: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("cookies.json.corrupt-"), "{aside:?}");
        assert_eq!(
            fs::read(dir.path().join(&aside[0])).unwrap(),
            b"{\"visitors\": {oops"
        );
    }

    #[test]
    fn forgets_the_longest_unseen() {
        let mut visitors = HashMap::new();
        for (id, when) in [
            ("a", "2025-01-02"),
            ("b", "2025-01-01"),
            ("c", "2025-01-03"),
        ] {
            let v = Visitor {
                visits: 1,
                first_visit: when.into(),
                last_visit: when.into(),
            };
            visitors.insert(id.to_string(), v);
        }
        forget_oldest(&mut visitors, 1);
        assert!(!visitors.contains_key("b"));
        assert_eq!(visitors.len(), 2);
    }
}
