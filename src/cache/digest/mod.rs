//! Objects stored by the digest their URL names (content-addressed): registry blobs, manifests by
//! digest, apt's by-hash files, `--digest-url` matches, and the signed storage URLs registries
//! redirect blob requests to ([`redirects`]).
//!
//! ```text
//!  URL ─ name::name ─> sha256:<hex> ─> one entry, key = Key::for_url("digest:sha256:<hex>")
//!  fill:  origin body ─ CacheWriter + FillCheck (sha256 while streaming) ─ matches? ─ yes ─> commit
//!                                                                               └─ no ──> dropped, counted
//!  serve: open_entry ─ written or read back by this process? ─ no ─> sha256 of the file ─ differs ─> removed
//! ```
//!
//! An object is an ordinary entry of the disk store, under a key of its own (the digest's name in a
//! scheme no fetched URL has), so it lives within `--cache-size` with the rest, in the same
//! least-recently-used order, with the same crash-safe write (temporary file renamed into place
//! once complete) and the same full-disk handling. Each URL naming the digest finds the one entry:
//! a layer pulled from two repositories or two registries is stored once.
//!
//! A body is stored only if its SHA-256 is the digest, checked while it streams in; and a file is
//! served by a process only after it wrote it or read it back whole and found the digest again (a
//! torn write after a crash, a damaged disk), so no byte of a wrong body is served from here. What
//! a request may be served (the registry's say on credentials) is `proxy::flow::digest`'s.

pub mod name;
pub mod redirects;

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::entry::{ResponseMeta, Stored};
use super::key::Key;
use super::store::OpenEntry;
use super::{Cache, CacheWriter};
use crate::http::ResponseHead;
use crate::runtime::{Mutex, RwLock};
use name::{DigestRules, Named, Sha256Digest};
use redirects::Redirects;

/// The stored head's field that says whether the object came to the cache without credentials
/// (`public`) or with them (`authorized`). Porter's own: never served, the served head is built.
const FILL_FIELD: &str = "porter-digest-fill";
/// The stored head's field naming the origin (`scheme://host:port`) the object was fetched from,
/// or whose redirect led to it: the first registry that proved it holds the bytes.
const ORIGIN_FIELD: &str = "porter-digest-origin";

/// Files read back and found right remembered at most; past it the memory starts over (and a file
/// is read back once more).
const VERIFIED_CAPACITY: usize = 65_536;
/// Objects whose further vouching origins are remembered at most, and origins per object; past it
/// the memory starts over (and those origins prove themselves again by sending the bytes).
const VOUCHED_CAPACITY: usize = 65_536;
const VOUCHED_PER_OBJECT: usize = 16;

/// The content-addressed part of the cache: rules, redirect targets, what was read back, counters.
#[derive(Default)]
pub struct Digests {
    rules: RwLock<DigestRules>,
    /// Whether `rules` holds any, read without the lock on every GET.
    has_rules: std::sync::atomic::AtomicBool,
    pub redirects: Redirects,
    /// Keys whose file (by inode) this process read back and found matching its digest.
    verified: Mutex<HashMap<Key, u64>>,
    /// Origins besides the stored one that sent an object's bytes (checked) in this process: a
    /// registry is asked whether a client may have an object only once it proved it holds it.
    vouched: Mutex<HashMap<Key, Vec<String>>>,
    pub stats: DigestStats,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct DigestStats {
    /// Requests served a stored object.
    pub hits: AtomicU64,
    /// Of those, the ones the registry was asked about first (credentials, or a private object).
    pub auth_checked: AtomicU64,
    /// Requests the registry refused when asked about a stored object (its answer was relayed).
    pub refused: AtomicU64,
    /// Objects stored.
    pub stored: AtomicU64,
    /// Bodies that did not match their digest: on fill (not stored) or on read-back (removed).
    pub mismatches: AtomicU64,
    /// Body bytes served from stored objects.
    pub served_bytes: AtomicU64,
    /// Body bytes stored from upstream.
    pub stored_bytes: AtomicU64,
}

impl DigestStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A stored object found for a digest, its file positioned at the body and already checked.
pub struct Object {
    pub digest: Sha256Digest,
    pub entry: OpenEntry,
    pub len: u64,
    pub content_type: Option<String>,
    /// Stored from a request without credentials: the bytes were anyone's to have.
    pub public: bool,
    /// The origin it was fetched from (or whose redirect led to it), `scheme://host:port`.
    pub origin: Option<String>,
}

/// How the fill of an object ended, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The body did not arrive whole, or the store could not take it.
    NotStored,
    Stored,
    /// The body's SHA-256 is not the digest: not stored.
    Mismatch,
}

/// Where a [`FillCheck`] leaves its verdict, read by the request once the body is relayed.
#[derive(Debug, Default)]
pub struct FillOutcome(AtomicU8);

impl FillOutcome {
    pub fn get(&self) -> Fill {
        match self.0.load(Ordering::Relaxed) {
            1 => Fill::Stored,
            2 => Fill::Mismatch,
            _ => Fill::NotStored,
        }
    }

    fn set(&self, fill: Fill) {
        let n = match fill {
            Fill::NotStored => 0,
            Fill::Stored => 1,
            Fill::Mismatch => 2,
        };
        self.0.store(n, Ordering::Relaxed);
    }
}

/// Hashes a body as it is stored; [`CacheWriter::commit`] asks it before the entry is put in place.
pub struct FillCheck {
    expected: Sha256Digest,
    hasher: Sha256,
    bytes: u64,
    outcome: Arc<FillOutcome>,
    digests: Arc<Digests>,
    /// The origin that proves it holds the object if the body matches.
    origin: String,
}

impl FillCheck {
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// Whether the body taken so far is the digest's; a mismatch is counted and logged.
    pub fn matches(&self) -> bool {
        let got = Sha256Digest::from_bytes(self.hasher.clone().finalize().into());
        if got == self.expected {
            return true;
        }
        self.outcome.set(Fill::Mismatch);
        DigestStats::add(&self.digests.stats.mismatches, 1);
        log::warn!(
            "cache: a body for {} has sha256 {}: not stored",
            self.expected.oci(),
            got.oci()
        );
        false
    }

    /// Records a commit's result (after [`FillCheck::matches`] said yes).
    pub fn committed(&self, ok: bool) {
        if ok {
            self.digests.vouch(self.expected.key(), &self.origin);
            self.outcome.set(Fill::Stored);
            DigestStats::add(&self.digests.stats.stored, 1);
            DigestStats::add(&self.digests.stats.stored_bytes, self.bytes);
        }
    }
}

impl Digests {
    fn is_verified(&self, key: Key, inode: u64) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.get(&key) == Some(&inode)
    }

    /// Records that `origin` sent the object's bytes.
    fn vouch(&self, key: Key, origin: &str) {
        let mut vouched = self.vouched.lock().unwrap_or_else(|e| e.into_inner());
        if vouched.len() >= VOUCHED_CAPACITY && !vouched.contains_key(&key) {
            vouched.clear();
        }
        let origins = vouched.entry(key).or_default();
        if !origins.iter().any(|o| o == origin) {
            if origins.len() >= VOUCHED_PER_OBJECT {
                origins.remove(0);
            }
            origins.push(origin.to_string());
        }
    }

    fn mark_verified(&self, key: Key, inode: u64) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(key, inode);
    }
}

impl Cache {
    /// The content-addressed part's rules, redirect targets and counters.
    pub fn digests(&self) -> &Arc<Digests> {
        &self.digests
    }

    /// Replaces the `--digest-url` rules (start-up and configuration reloads).
    pub fn set_digest_rules(&self, rules: DigestRules) {
        let any = !rules.is_empty();
        *self
            .digests
            .rules
            .write()
            .unwrap_or_else(|e| e.into_inner()) = rules;
        self.digests.has_rules.store(any, Ordering::Relaxed);
    }

    /// The digest `url` names (its shape, a `--digest-url` rule), if any.
    pub fn digest_named(&self, url: &str) -> Option<Named> {
        if !self.digests.has_rules.load(Ordering::Relaxed) {
            return name::name(url, &DigestRules::default());
        }
        let rules = self.digests.rules.read().unwrap_or_else(|e| e.into_inner());
        name::name(url, &rules)
    }

    /// The stored object for `digest`, checked: a file this process did not write is read back
    /// whole first, and removed when its SHA-256 is not the digest. On a disk thread.
    pub fn digest_object(&self, digest: Sha256Digest) -> Option<Object> {
        let (store, digests) = (Arc::clone(&self.store), Arc::clone(&self.digests));
        self.disk
            .run(super::DISK_TIMEOUT, move || {
                object_from_disk(&store, &digests, digest)
            })
            .map_err(|e| super::diskio::warn_failed("reading a digest object (a miss)", e))
            .ok()
            .flatten()
    }

    /// Whether `origin` proved it holds `object`: the object was fetched from it (or through its
    /// redirect), or it sent the bytes since. Only such a registry is asked whether a client may
    /// have the object; any other could answer yes without holding it.
    pub fn digest_vouches(&self, object: &Object, origin: &str) -> bool {
        if object.origin.as_deref() == Some(origin) {
            return true;
        }
        let vouched = self
            .digests
            .vouched
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        vouched
            .get(&object.digest.key())
            .is_some_and(|origins| origins.iter().any(|o| o == origin))
    }

    /// Starts storing a body under `digest`; the writer commits it only if its SHA-256 is the
    /// digest. `public` says the request carried no credentials; `origin` (`scheme://host:port`)
    /// is the registry that proves it holds the object if the body matches. `None` when the store
    /// refuses.
    pub fn digest_writer(
        &self,
        digest: Sha256Digest,
        response: &ResponseHead,
        (public, origin): (bool, &str),
        outcome: Arc<FillOutcome>,
    ) -> Option<CacheWriter> {
        let mut head = ResponseHead::new(200);
        if let Some(content_type) = response.headers.get("content-type") {
            head.headers.append("Content-Type", content_type);
        }
        head.headers.append("Docker-Content-Digest", digest.oci());
        // Never served (the served head is built), but `porter cache ls` judges entries by it:
        // the bytes of a digest never change.
        head.headers
            .append("Cache-Control", "max-age=31536000, immutable");
        head.headers
            .append(FILL_FIELD, if public { "public" } else { "authorized" });
        head.headers.append(ORIGIN_FIELD, origin);
        let now = SystemTime::now();
        let meta = ResponseMeta {
            head,
            request_time: now,
            response_time: now,
            vary_values: Vec::new(),
        };
        let stored = Stored::Response(meta.clone());
        let url = digest.store_url();
        let key = digest.key();
        let (store, max) = (Arc::clone(&self.store), self.max_object_size);
        let inner = self
            .disk
            .run(super::DISK_TIMEOUT, move || {
                store.writer(key, &url, &stored, max)
            })
            .map_err(|e| super::diskio::warn_failed("starting a digest object (not stored)", e))
            .ok()
            .flatten()?;
        outcome.set(Fill::NotStored);
        Some(CacheWriter {
            inner: Some(inner),
            memory: Arc::clone(&self.memory),
            disk: Arc::clone(&self.disk),
            url_key: key,
            meta: Arc::new(meta),
            refresh: None,
            shared: None,
            check: Some(FillCheck {
                expected: digest,
                hasher: Sha256::new(),
                bytes: 0,
                outcome,
                digests: Arc::clone(&self.digests),
                origin: origin.to_string(),
            }),
        })
    }

    /// Removes the object `url` names, if it names one (PURGE of a blob URL).
    pub(super) fn invalidate_digest(&self, url: &str) -> bool {
        let Some(named) = self.digest_named(url) else {
            return false;
        };
        let key = named.digest.key();
        let existed = key.path(self.store.root()).exists();
        self.store.remove(key);
        existed
    }
}

/// The stored object for `digest`, checked: a file this process did not write is read back
/// whole first, and removed when its SHA-256 is not the digest. Blocking: for the disk threads.
fn object_from_disk(
    store: &super::store::Store,
    digests: &Digests,
    digest: Sha256Digest,
) -> Option<Object> {
    let key = digest.key();
    let mut entry = store.open_entry(key)?;
    if entry.decoded.url != digest.store_url() {
        return None;
    }
    let Stored::Response(meta) = &entry.decoded.stored else {
        return None;
    };
    let content_type = meta.head.headers.get("content-type").map(str::to_string);
    let public = meta.head.headers.get(FILL_FIELD) == Some("public");
    let origin = meta.head.headers.get(ORIGIN_FIELD).map(str::to_string);
    let inode = inode(&entry)?;
    if !store.is_verified(&entry) && !digests.is_verified(key, inode) {
        match read_back(&mut entry) {
            Ok(found) if found == digest => digests.mark_verified(key, inode),
            Ok(found) => {
                log::warn!(
                    "cache: stored object {} reads back as {}: removed",
                    digest.oci(),
                    found.oci()
                );
                DigestStats::add(&digests.stats.mismatches, 1);
                store.remove(key);
                return None;
            }
            Err(e) => {
                log::warn!("cache: cannot read back {}: {e}", digest.oci());
                return None;
            }
        }
    }
    Some(Object {
        digest,
        len: entry.decoded.body_len,
        entry,
        content_type,
        public,
        origin,
    })
}

/// The SHA-256 of an entry's body, read whole; the file is left positioned at the body again.
fn read_back(entry: &mut OpenEntry) -> io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = entry.decoded.body_len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = entry.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    entry
        .file
        .seek(SeekFrom::Start(entry.decoded.body_offset))?;
    Ok(Sha256Digest::from_bytes(hasher.finalize().into()))
}

fn inode(entry: &OpenEntry) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    entry.file.metadata().ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::cache::CacheConfig;

    fn cache(dir: &std::path::Path) -> Cache {
        Cache::open(&CacheConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 20,
            max_object_size: 1 << 20,
            memory_bytes: 0,
            refresh: Default::default(),
            disk_threads: 0,
        })
        .unwrap()
    }

    fn fill(cache: &Cache, digest: Sha256Digest, body: &[u8]) -> (io::Result<()>, Fill) {
        let outcome = Arc::new(FillOutcome::default());
        let head = ResponseHead::new(200);
        let mut writer = cache
            .digest_writer(
                digest,
                &head,
                (true, "http://r.test:80"),
                Arc::clone(&outcome),
            )
            .unwrap();
        writer.write_all(body).unwrap();
        (writer.commit(), outcome.get())
    }

    #[test]
    fn a_body_is_stored_only_under_its_own_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let body = b"layer bytes".as_slice();
        let wrong = Sha256Digest::of(b"other bytes");
        let (result, fill_result) = fill(&cache, wrong, body);
        assert!(result.is_err());
        assert_eq!(fill_result, Fill::Mismatch);
        assert!(
            cache.digest_object(wrong).is_none(),
            "a mismatch is never stored"
        );
        assert_eq!(cache.digests().stats.mismatches.load(Ordering::Relaxed), 1);
        let right = Sha256Digest::of(body);
        let (result, fill_result) = fill(&cache, right, body);
        assert!(result.is_ok());
        assert_eq!(fill_result, Fill::Stored);
        let mut object = cache.digest_object(right).unwrap();
        assert_eq!((object.len, object.public), (body.len() as u64, true));
        assert!(cache.digest_vouches(&object, "http://r.test:80"));
        assert!(!cache.digest_vouches(&object, "http://other.test:80"));
        let mut read = Vec::new();
        object.entry.file.read_to_end(&mut read).unwrap();
        assert_eq!(read, body);
    }

    #[test]
    fn a_damaged_file_is_read_back_removed_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let body = vec![7u8; 10_000];
        let digest = Sha256Digest::of(&body);
        {
            let cache = cache(dir.path());
            assert!(fill(&cache, digest, &body).0.is_ok());
        }
        // Another process (a restart) finds the file with one byte changed at its end.
        let path = digest.key().path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let cache = cache(dir.path());
        assert!(cache.digest_object(digest).is_none());
        assert!(!path.exists(), "removed");
        assert_eq!(cache.digests().stats.mismatches.load(Ordering::Relaxed), 1);
    }
}
