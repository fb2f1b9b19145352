//! The HTTP cache: `policy` decides (pure RFC 9111), `key` names, `entry` encodes, `store` keeps files
//! on disk and evicts, `lock` collapses concurrent misses. [`Cache`] ties them together for the proxy.

pub mod admin;
mod conditional;
pub mod control;
pub mod digest;
mod directives;
pub mod diskio;
pub mod ecosystem;
pub mod entry;
mod eviction;
mod freshness;
pub mod inflight;
pub mod key;
pub mod lock;
pub mod memory;
pub mod partial;
pub mod policy;
pub mod ranges;
pub mod refresh;
mod stale;
pub mod status;
pub mod store;
#[cfg(test)]
mod testutil;
pub mod uncacheable;
pub mod update;
mod vary;

use std::cell::OnceCell;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use diskio::{DISK_TIMEOUT, Pool};
use entry::{ResponseMeta, Stored};
use inflight::{End, Inflight};
use key::Key;
use lock::{Lease, MissLocks};
use memory::{MAX_MEMORY_OBJECT, MemoryTier};
use refresh::RuleMatch;
use status::NotStored;
use store::{EntryWriter, OpenEntry, Store, StoreStats};
use uncacheable::UncacheableMarks;

use crate::http::{RequestHead, ResponseHead, hop};
pub use conditional::PRECONDITION_FIELDS;

/// How the cache is set up.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// Disk space the entries may use.
    pub max_bytes: u64,
    /// Largest body stored.
    pub max_object_size: u64,
    /// RAM for small hot entries.
    pub memory_bytes: u64,
    /// Freshness for URLs whose responses state none (`--refresh`, `--refresh-preset`).
    pub refresh: policy::RefreshRules,
    /// Threads that open, read and write entry files while tasks wait (`--disk-threads`); 0 does
    /// that on the workers.
    pub disk_threads: usize,
}

/// Where a found response's body is.
pub enum StoredBody {
    /// In an entry file, positioned at the body.
    File(Box<OpenEntry>),
    /// In the memory tier (already verified).
    Memory(Arc<[u8]>),
}

/// A stored response found for a request.
pub struct Found {
    pub key: Key,
    pub body: StoredBody,
    pub body_len: u64,
    pub meta: Arc<ResponseMeta>,
    /// The stored head's freshness facts, worked out once per entry.
    pub freshness: Arc<policy::StoredFreshness>,
    /// The memory tier's removal count read before the entry's file was opened: its body goes to
    /// the memory tier only if nothing was removed since. Whatever replaces or removes an entry
    /// file (a store's commit, a head rewritten after a 304, a purge) removes the URL from the
    /// memory tier afterwards, so an entry opened before that cannot come back from memory.
    removals: u64,
    /// A body read whole from disk by the lookup (and checked there), held as `Memory` already:
    /// [`Cache::prepare`] offers it to the memory tier when it is served.
    offer: bool,
}

fn freshness_of(meta: &ResponseMeta, refresh: Option<RuleMatch>) -> Arc<policy::StoredFreshness> {
    let freshness = policy::StoredFreshness::with_rule(
        &meta.head,
        meta.request_time,
        meta.response_time,
        refresh.and_then(|m| m.lifetime()),
    );
    Arc::new(match refresh {
        Some(m) => freshness.named(m.detail),
        None => freshness,
    })
}

/// The `--refresh` rule of one request's URL, matched the first time it is needed and then reused:
/// a request runs the rules' regexes at most once (a hit from memory never), however many lookups,
/// stores and head updates it makes.
#[derive(Debug, Default)]
pub struct RuleOnce(OnceCell<Option<RuleMatch>>);

/// Stores one response; `commit` makes it the entry and drops any older copy from the memory tier.
/// Once shared ([`CacheWriter::share`]), other requests read the body while it is written; dropping
/// the writer without committing ends it for them as failed.
pub struct CacheWriter {
    inner: Option<EntryWriter>,
    memory: Arc<MemoryTier>,
    disk: Arc<Pool>,
    url_key: Key,
    meta: Arc<ResponseMeta>,
    /// The `--refresh` rule for the URL, for the freshness readers judge it by.
    refresh: Option<RuleMatch>,
    shared: Option<Arc<Inflight>>,
    /// For an object stored by digest: the body's SHA-256, checked before it is committed.
    check: Option<digest::FillCheck>,
}

impl CacheWriter {
    /// See [`EntryWriter::commit`]: on a disk thread.
    pub fn commit(self) -> io::Result<()> {
        self.finish(&[])
    }

    /// Writes the body's last bytes and commits, in one disk job: the body's end is known (see
    /// [`EntryWriter::commit`]). One trip to a disk thread instead of a write's and a commit's.
    pub fn finish(mut self, last: &[u8]) -> io::Result<()> {
        let mut check = self.check.take();
        if let Some(check) = check.as_mut() {
            check.update(last);
        }
        if check.as_ref().is_some_and(|check| !check.matches()) {
            // Dropping the entry writer deletes its temporary file: nothing of the body is kept.
            self.inner = None;
            return Err(io::Error::other("body does not match its digest"));
        }
        let result = match self.inner.take() {
            Some(mut inner) => {
                let last = last.to_vec();
                let total = inner.body_len() + last.len() as u64;
                let job = move || {
                    use std::io::Write as _;
                    if !last.is_empty() {
                        inner.write_all(&last)?;
                    }
                    // The handle for readers that have none yet: the file may have been created
                    // by this very job.
                    inner.commit_for_readers()
                };
                self.disk
                    .run(DISK_TIMEOUT, job)
                    .unwrap_or_else(|e| Err(e.into()))
                    .map(|file| (total, file))
            }
            None => Err(io::Error::other("already committed")),
        };
        if let Some(check) = &check {
            check.committed(result.is_ok());
        }
        // A request that read the old entry meanwhile may have put it in memory.
        self.memory.remove(&self.url_key);
        if let Some(shared) = &self.shared {
            match &result {
                Ok((total, file)) => {
                    // The commit wrote the last bytes: readers may read them, through the file's
                    // handle (theirs already, unless this job created the file).
                    shared.set_file(Arc::clone(file));
                    shared.advance(*total);
                    shared.end(End::Complete);
                }
                Err(_) => shared.end(End::Failed),
            }
        }
        result.map(drop)
    }

    /// Lets other requests read the body as it is written. `length` is the body's Content-Length,
    /// when the origin sent one. No disk job: readers share the writer's handle on the file,
    /// given to them once a write created it.
    pub fn share(&mut self, length: Option<u64>) -> Option<Arc<Inflight>> {
        let inner = self.inner.as_ref()?;
        let freshness = freshness_of(&self.meta, self.refresh);
        let shared = Arc::new(Inflight::new(
            Arc::clone(&self.meta),
            freshness,
            length,
            inner.for_readers(),
            inner.body_offset(),
        ));
        self.shared = Some(Arc::clone(&shared));
        Some(shared)
    }

    /// The entry as readers see it while it is written, once [`CacheWriter::share`] made it.
    pub fn shared(&self) -> Option<&Arc<Inflight>> {
        self.shared.as_ref()
    }

    /// With the fetching client gone, whether to go on fetching into the cache: while anyone reads
    /// along, or when little of a known length is missing ([`inflight::finish_for_nobody`]).
    pub fn worth_finishing(&self) -> bool {
        let received = self.inner.as_ref().map_or(0, EntryWriter::body_len);
        match &self.shared {
            Some(shared) => {
                shared.readers() > 0 || inflight::finish_for_nobody(received, shared.length)
            }
            None => false,
        }
    }
}

impl CacheWriter {
    /// Runs `op` on the entry writer on a disk thread, the writer moving there and back. A job that
    /// gives no answer keeps the writer: dropped there, it deletes its temporary file, and this
    /// store fails.
    fn on_disk(
        &mut self,
        op: impl FnOnce(&mut EntryWriter) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        let mut inner = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("already committed"))?;
        let (inner, result) = self.disk.run(DISK_TIMEOUT, move || {
            let result = op(&mut inner);
            (inner, result)
        })?;
        self.inner = Some(inner);
        result
    }
}

impl io::Write for CacheWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| io::Error::other("already committed"))?;
        // Readers read the file, so what they are told is there must be there: shared bodies are
        // flushed each write. Otherwise bytes that fit the write buffer stay on the worker.
        let flush = self.shared.is_some();
        if !flush && inner.buffers(data.len()) {
            inner.write_all(data)?;
            if let Some(check) = self.check.as_mut() {
                check.update(data);
            }
            return Ok(data.len());
        }
        let (len, owned) = (data.len(), data.to_vec());
        self.on_disk(move |inner| {
            inner.write_all(&owned)?;
            if flush { inner.flush() } else { Ok(()) }
        })?;
        if let Some(check) = self.check.as_mut() {
            check.update(data);
        }
        if let (Some(shared), Some(inner)) = (&self.shared, &self.inner) {
            // The first write to the disk created the file: the readers' handle goes with the
            // first bytes they are told of.
            if !shared.has_file() {
                match inner.for_readers() {
                    Some(file) => shared.set_file(file),
                    // Readers could not read what they would be told of: the store fails.
                    None => {
                        self.inner = None;
                        return Err(io::Error::other("no handle on the entry for its readers"));
                    }
                }
            }
            shared.advance(inner.body_len());
        }
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.inner {
            Some(_) => self.on_disk(|inner| inner.flush()),
            None => Ok(()),
        }
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            // Committed: already Complete. Otherwise the body broke off or the store failed.
            shared.end(End::Failed);
        }
    }
}

/// The proxy's cache.
pub struct Cache {
    store: Arc<Store>,
    memory: Arc<MemoryTier>,
    /// The disk threads every entry open, read, write and removal runs on ([`diskio`]).
    disk: Arc<Pool>,
    locks: Arc<MissLocks>,
    uncacheable: UncacheableMarks,
    max_object_size: u64,
    /// Where `porter cache purge|clear` tells this process what it removed; `None` when the socket
    /// could not be made (then those commands cannot reach this process, which is logged).
    _control: Option<control::ControlSocket>,
    /// Swapped by a configuration reload (SIGHUP), so it sits behind a lock.
    refresh: crate::runtime::RwLock<policy::RefreshRules>,
    /// Objects stored by digest ([`digest`]).
    digests: Arc<digest::Digests>,
}

impl Cache {
    pub fn open(config: &CacheConfig) -> io::Result<Cache> {
        let store = Store::open(&config.dir, config.max_bytes).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot use cache folder {}: {e}", config.dir.display()),
            )
        })?;
        let memory = Arc::new(MemoryTier::new(config.memory_bytes));
        let disk = Arc::new(Pool::new("disk", config.disk_threads)?);
        let control = control::listen(&config.dir, &store, &memory)
            .map_err(|e| {
                log::warn!(
                    "cache: no control socket in {} ({e}): porter cache purge and clear will not reach this proxy",
                    config.dir.display()
                )
            })
            .ok();
        Ok(Cache {
            store,
            memory,
            disk,
            locks: Arc::default(),
            uncacheable: UncacheableMarks::default(),
            max_object_size: config.max_object_size,
            _control: control,
            refresh: crate::runtime::RwLock::new(config.refresh.clone()),
            digests: Arc::default(),
        })
    }

    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    /// The duration of the `--refresh` rule for `url`, if one applies.
    pub fn refresh_rule(&self, url: &str) -> Option<Duration> {
        self.refresh_match(url).and_then(|m| m.lifetime())
    }

    /// The first `--refresh` rule matching `url`, a zero rule included.
    pub fn refresh_match(&self, url: &str) -> Option<RuleMatch> {
        self.refresh
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .matching(url)
    }

    /// Replaces the `--refresh` rules (a configuration reload).
    pub fn set_refresh_rules(&self, rules: policy::RefreshRules) {
        *self.refresh.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// [`Cache::refresh_rule`], matched once per request through `once`.
    pub fn rule_once(&self, url: &str, once: &RuleOnce) -> Option<Duration> {
        self.match_once(url, once).and_then(|m| m.lifetime())
    }

    /// [`Cache::refresh_match`], matched once per request through `once`.
    pub fn match_once(&self, url: &str, once: &RuleOnce) -> Option<RuleMatch> {
        *once.0.get_or_init(|| self.refresh_match(url))
    }

    /// The stored response for this URL that matches the request's Vary headers, if any.
    pub fn lookup(&self, url: &str, req: &RequestHead) -> Option<Found> {
        self.lookup_with(url, req, &RuleOnce::default())
    }

    /// [`Cache::lookup`] with the request's refresh rule, matched only if the entry is read from disk.
    pub fn lookup_with(&self, url: &str, req: &RequestHead, rule: &RuleOnce) -> Option<Found> {
        let primary_key = Key::for_url(url);
        if let Some(hot) = self.memory.get(&primary_key)
            && hot.url == url
        {
            return Some(Found {
                key: primary_key,
                body_len: hot.body.len() as u64,
                body: StoredBody::Memory(Arc::clone(&hot.body)),
                meta: Arc::clone(&hot.meta),
                freshness: Arc::clone(&hot.freshness),
                removals: 0, // in memory already: never inserted again from here
                offer: false,
            });
        }
        // Before the open: see `Found::removals`.
        let removals = self.memory.removals();
        let primary = self.open_on_disk(primary_key)?;
        if primary.decoded.url != url {
            return None; // a SHA-256 collision is not going to happen, but a copied file could
        }
        let (mut entry, wanted) = match &primary.decoded.stored {
            Stored::Response(_) => (primary, Vec::new()),
            Stored::VaryMarker { names, generation } => {
                let values = policy::vary_values(req, names);
                let variant = self.open_on_disk(Key::for_variant(url, *generation, &values))?;
                (variant, values)
            }
        };
        let answers = matches!(&entry.decoded.stored,
            Stored::Response(meta) if meta.vary_values == wanted && entry.decoded.url == url);
        if !answers {
            return None;
        }
        // The head moves to `Found::meta` (not copied): no one reads the entry's again.
        let nothing = Stored::VaryMarker {
            names: Vec::new(),
            generation: 0,
        };
        let Stored::Response(meta) = std::mem::replace(&mut entry.decoded.stored, nothing) else {
            return None;
        };
        let meta = Arc::new(meta);
        let (key, body_len) = (entry.key, entry.decoded.body_len);
        // A small body read whole and checked in the open needs its file no more: it is served
        // from memory (and offered to the memory tier) as `prepare` would have, and the file is
        // closed now, without a box to carry it there.
        let memory_eligible = meta.vary_values.is_empty() && body_len <= MAX_MEMORY_OBJECT;
        let (body, offer) = match entry.body.take() {
            Some(body) if memory_eligible => (StoredBody::Memory(body), true),
            body => {
                entry.body = body;
                (StoredBody::File(Box::new(entry)), false)
            }
        };
        Some(Found {
            key,
            body_len,
            body,
            freshness: freshness_of(&meta, self.match_once(url, rule)),
            meta,
            removals,
            offer,
        })
    }

    /// An entry file opened and its head read on a disk thread; `None` when there is none, or the
    /// disk gave no answer (a miss then).
    fn open_on_disk(&self, key: Key) -> Option<OpenEntry> {
        // A small entry whose path and bytes are in the kernel's caches needs no disk thread.
        if let store::Nowait::Done(found) = self.store.open_small_nowait(key) {
            return found;
        }
        let store = Arc::clone(&self.store);
        match self.disk.run(DISK_TIMEOUT, move || store.open_entry(key)) {
            Ok(entry) => entry,
            Err(e) => {
                diskio::warn_failed("opening an entry (served as a miss)", e);
                None
            }
        }
    }

    /// Checks a found entry's body before it is first served by this process, and moves small bodies
    /// into the memory tier, on a disk thread. `false` means the entry was damaged (and is gone), or
    /// the disk gave no answer: either way the request is a miss.
    pub fn prepare(&self, url: &str, found: &mut Found) -> bool {
        let StoredBody::File(entry) = &found.body else {
            if let (true, StoredBody::Memory(body)) =
                (std::mem::take(&mut found.offer), &found.body)
            {
                let (meta, freshness) = (Arc::clone(&found.meta), Arc::clone(&found.freshness));
                let (key, removals, body) = (found.key, Some(found.removals), Arc::clone(body));
                self.memory
                    .insert_unless_removed(removals, key, url, meta, freshness, body);
            }
            return true;
        };
        // A large entry this process already checked needs no disk work (fstat on an open file
        // reads no disk), so no trip to a disk thread: sendfile takes it from here.
        let memory_eligible =
            found.meta.vary_values.is_empty() && found.body_len <= MAX_MEMORY_OBJECT;
        if !memory_eligible && self.store.is_verified(entry) {
            return true;
        }
        // Checked already and small: into the memory tier, from the bytes the open read and
        // checked (no disk, no system call), or from the page cache if they are there.
        let body = match &entry.body {
            Some(body) if memory_eligible => Some(Arc::clone(body)),
            None if memory_eligible && self.store.is_verified(entry) => {
                self.store.body_nowait(entry).map(Arc::from)
            }
            _ => None,
        };
        if let Some(body) = body {
            let (meta, freshness) = (Arc::clone(&found.meta), Arc::clone(&found.freshness));
            self.memory.insert_unless_removed(
                Some(found.removals),
                found.key,
                url,
                meta,
                freshness,
                Arc::clone(&body),
            );
            found.body = StoredBody::Memory(body);
            return true;
        }
        let taken = std::mem::replace(&mut found.body, StoredBody::Memory(Arc::from([])));
        let StoredBody::File(entry) = taken else {
            return false;
        };
        let (store, memory) = (Arc::clone(&self.store), Arc::clone(&self.memory));
        let (key, url) = (found.key, url.to_string());
        let (meta, freshness) = (Arc::clone(&found.meta), Arc::clone(&found.freshness));
        let (body_len, removals) = (found.body_len, found.removals);
        let job = move || {
            let found = diskio::Prepare {
                key,
                url: &url,
                meta,
                freshness,
                body_len,
                removals,
            };
            diskio::prepare_file(&store, &memory, found, entry)
        };
        match self.disk.run(DISK_TIMEOUT, job) {
            Ok(Some(body)) => {
                found.body = body;
                true
            }
            Ok(None) => false,
            Err(e) => {
                diskio::warn_failed("checking an entry (served as a miss)", e);
                false
            }
        }
    }

    /// See [`Store::commits`].
    pub fn commits(&self) -> u64 {
        self.store.commits()
    }

    /// Whether `url`'s last response could not be stored, for a reason in the response: its
    /// misses then do not wait for each other's fetches ([`uncacheable`]).
    pub fn recently_uncacheable(&self, url: &str) -> bool {
        !self.uncacheable.is_empty() && self.uncacheable.is_marked(&Key::for_url(url))
    }

    /// Records that the response to `req` for `url`, with `status`, was not stored for `reason`;
    /// see [`Cache::recently_uncacheable`].
    pub fn record_not_stored(&self, url: &str, req: &RequestHead, status: u16, reason: NotStored) {
        if uncacheable::marks_the_url(reason, req, status) {
            self.uncacheable.mark(Key::for_url(url));
        }
    }

    /// Becomes the one request fetching `url`, or waits (bounded) for the one that is.
    pub fn lock(&self, url: &str, wait: Duration) -> Lease {
        self.locks.acquire(Key::for_url(url), wait)
    }

    /// Starts storing a response. The head is stored without hop-by-hop and framing fields. The
    /// error says why nothing will be stored.
    pub fn writer(
        &self,
        url: &str,
        req: &RequestHead,
        response: &ResponseHead,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Result<CacheWriter, NotStored> {
        let url_key = Key::for_url(url);
        // Whatever happens to this fetch, the copy in memory is about to be outdated.
        self.memory.remove(&url_key);
        let key = match policy::vary(response) {
            policy::Vary::Any => return Err(NotStored::Policy(policy::NoStore::VaryStar)),
            policy::Vary::None => url_key,
            policy::Vary::Headers(names) => {
                let generation = self
                    .vary_generation(url, &names)
                    .ok_or(NotStored::StoreFailed)?;
                Key::for_variant(url, generation, &policy::vary_values(req, &names))
            }
        };
        let vary_values = match policy::vary(response) {
            policy::Vary::Headers(names) => policy::vary_values(req, &names),
            _ => Vec::new(),
        };
        let meta = ResponseMeta {
            head: storable_head(response),
            request_time,
            response_time,
            vary_values,
        };
        let meta = Arc::new(meta);
        let stored = Stored::Response((*meta).clone());
        // No disk access: the temporary file is created by the entry's first write to the disk.
        let mut inner = self
            .store
            .writer(key, url, &stored, self.max_object_size)
            .ok_or(NotStored::StoreFailed)?;
        if !self.store.creates_work() {
            // The disk refused the last temporary file (or none was made yet): this one is created
            // now, so a disk that refuses is known before the response is published to readers.
            inner = self
                .disk
                .run(DISK_TIMEOUT, move || inner.create_now().map(|()| inner))
                .map_err(|e| diskio::warn_failed("starting an entry (not stored)", e))
                .ok()
                .and_then(Result::ok)
                .ok_or(NotStored::StoreFailed)?;
        }
        // A response for the URL is being stored again: its misses wait for each other's again.
        self.uncacheable.clear(&url_key);
        Ok(CacheWriter {
            inner: Some(inner),
            memory: Arc::clone(&self.memory),
            disk: Arc::clone(&self.disk),
            url_key,
            meta,
            refresh: self.refresh_match(url),
            shared: None,
            check: None,
        })
    }

    /// The generation of the URL's Vary marker for these names, writing a new marker (a new
    /// generation, so older variants are unreachable) when there is none or it names other headers;
    /// on a disk thread.
    fn vary_generation(&self, url: &str, names: &[String]) -> Option<u64> {
        let store = Arc::clone(&self.store);
        let (url, names) = (url.to_string(), names.to_vec());
        let job = move || diskio::vary_generation(&store, &url, &names);
        self.disk
            .run(DISK_TIMEOUT, job)
            .map_err(|e| diskio::warn_failed("reading a Vary marker (not stored)", e))
            .ok()
            .flatten()
    }

    /// Replaces a stored head after a 304 (RFC 9111 §4.3.4), keeping the body.
    pub fn update_head(&self, url: &str, found: &mut Found) -> io::Result<()> {
        self.update_head_with(url, found, &RuleOnce::default())
    }

    /// [`Cache::update_head`] with the request's refresh rule.
    pub fn update_head_with(
        &self,
        url: &str,
        found: &mut Found,
        rule: &RuleOnce,
    ) -> io::Result<()> {
        let meta = ResponseMeta {
            head: storable_head(&found.meta.head),
            ..(*found.meta).clone()
        };
        let meta = Arc::new(meta);
        let freshness = freshness_of(&meta, self.match_once(url, rule));
        let source = match &found.body {
            StoredBody::Memory(body) => diskio::Source::Memory(Arc::clone(body)),
            // A handle of its own (no disk access): the job reads at offsets, so the entry's file
            // position is never moved, and a job that outlives its deadline leaves `found` whole.
            StoredBody::File(entry) => {
                diskio::Source::File(entry.file.try_clone()?, entry.decoded.body_offset)
            }
        };
        let store = Arc::clone(&self.store);
        let (key, owned_url, max) = (found.key, url.to_string(), self.max_object_size);
        let (stored, body_len) = (Stored::Response((*meta).clone()), found.body_len);
        let job =
            move || diskio::rewrite_head(&store, key, &owned_url, &stored, max, source, body_len);
        let written = self
            .disk
            .run(DISK_TIMEOUT, job)
            .unwrap_or_else(|e| Err(e.into()));
        if written.is_ok() {
            // The old entry's file is replaced: a lookup that opened it must not put it in memory.
            self.memory.remove(&found.key);
        }
        if let (Ok(()), StoredBody::Memory(body)) = (&written, &found.body) {
            let hot = (Arc::clone(&meta), Arc::clone(&freshness));
            self.memory
                .insert(found.key, url, hot.0, hot.1, Arc::clone(body));
        }
        found.meta = meta;
        found.freshness = freshness;
        written
    }

    /// Forgets a URL (RFC 9111 §4.4 invalidation, PURGE). Returns whether something was stored.
    /// On a disk thread; with every disk thread busy, here: a purge must not be skipped.
    pub fn invalidate(&self, url: &str) -> bool {
        let key = Key::for_url(url);
        let (store, memory) = (Arc::clone(&self.store), Arc::clone(&self.memory));
        let job = move || {
            let existed = key.path(store.root()).exists();
            // Disk first: a request that opened the old file read the memory tier's removal count
            // before, so this removal keeps its copy out of memory (`Found::removals`). Both in
            // the job, so the order holds even when the task stops waiting for it.
            store.remove(key);
            memory.remove(&key);
            existed
        };
        let (store, memory) = (Arc::clone(&self.store), Arc::clone(&self.memory));
        let existed = match self.disk.run(DISK_TIMEOUT, job) {
            Ok(existed) => existed,
            Err(diskio::Error::Busy) => {
                let existed = key.path(store.root()).exists();
                store.remove(key);
                memory.remove(&key);
                existed
            }
            Err(e) => {
                diskio::warn_failed("removing an entry (it goes when the disk answers)", e);
                false
            }
        };
        // A URL naming a digest also forgets the object stored under it.
        self.invalidate_digest(url) || existed
    }
}

/// A number no earlier Vary marker of this cache folder used: the clock in nanoseconds, made unique
/// within the process by a counter.
fn new_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A head as stored: no hop-by-hop fields, no framing (the length is the stored body's), no
/// Set-Cookie (it is one client's, never to be served to another; `policy::storable` decides whether
/// the rest is worth keeping), and none of the fields a field-named `no-cache` keeps out of shared
/// reuse (RFC 9111 §5.2.2.4).
fn storable_head(response: &ResponseHead) -> ResponseHead {
    let mut head = response.clone();
    hop::strip(&mut head.headers);
    head.headers.remove("content-length");
    head.headers.remove("set-cookie");
    head.headers.remove("set-cookie2");
    for field in policy::CacheControl::parse(&response.headers).no_cache_fields {
        head.headers.remove(&field);
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{RefreshRule, RefreshRules};

    fn cache_with_rule(dir: &std::path::Path, fresh_for: Duration) -> Cache {
        let rule = RefreshRule::new(r"\.deb$", fresh_for).unwrap();
        Cache::open(&CacheConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 20,
            max_object_size: 1 << 20,
            memory_bytes: 0,
            refresh: RefreshRules::new(vec![rule]),
            disk_threads: 0,
        })
        .unwrap()
    }

    /// Review defect 6: every disk lookup ran the refresh rules' regexes, and the store after it ran
    /// them again. Through one request's `RuleOnce` they are matched once: the second ask is answered
    /// from the first, even by a cache whose rules would say otherwise.
    #[test]
    fn a_request_matches_the_refresh_rules_once_however_often_it_asks() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let hour = Duration::from_secs(3600);
        let (a, b) = (
            cache_with_rule(one.path(), hour),
            cache_with_rule(two.path(), 2 * hour),
        );
        let url = "http://deb.example/pool/p.deb";
        let once = RuleOnce::default();
        assert_eq!(a.rule_once(url, &once), Some(hour));
        assert_eq!(b.rule_once(url, &once), Some(hour), "not matched again");
        assert_eq!(b.rule_once(url, &RuleOnce::default()), Some(2 * hour));
    }
}
