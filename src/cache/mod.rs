//! The HTTP cache: `policy` decides (pure RFC 9111), `key` names, `entry` encodes, `store` keeps files
//! on disk and evicts, `lock` collapses concurrent misses. [`Cache`] ties them together for the proxy.

pub mod admin;
mod conditional;
mod directives;
pub mod entry;
mod freshness;
pub mod key;
pub mod lock;
pub mod policy;
pub mod store;
#[cfg(test)]
mod testutil;
mod vary;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use entry::{ResponseMeta, Stored};
use key::Key;
use lock::{Lease, MissLocks};
use store::{EntryWriter, OpenEntry, Store, StoreStats};

use crate::http::{RequestHead, ResponseHead, hop};

/// How the cache is set up.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// Disk space the entries may use.
    pub max_bytes: u64,
    /// Largest body stored.
    pub max_object_size: u64,
}

/// A stored response found for a request, positioned at its body.
pub struct Found {
    pub entry: OpenEntry,
    pub meta: ResponseMeta,
}

/// The proxy's cache.
pub struct Cache {
    store: Arc<Store>,
    locks: Arc<MissLocks>,
    max_object_size: u64,
}

impl Cache {
    pub fn open(config: &CacheConfig) -> io::Result<Cache> {
        let store = Store::open(&config.dir, config.max_bytes).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot use cache folder {}: {e}", config.dir.display()),
            )
        })?;
        Ok(Cache {
            store,
            locks: Arc::default(),
            max_object_size: config.max_object_size,
        })
    }

    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    /// The stored response for this URL that matches the request's Vary headers, if any.
    pub fn lookup(&self, url: &str, req: &RequestHead) -> Option<Found> {
        let primary = self.store.open_entry(Key::for_url(url))?;
        if primary.decoded.url != url {
            return None; // a SHA-256 collision is not going to happen, but a copied file could
        }
        let (entry, wanted) = match &primary.decoded.stored {
            Stored::Response(_) => (primary, Vec::new()),
            Stored::VaryMarker(names) => {
                let values = policy::vary_values(req, names);
                let variant = self.store.open_entry(Key::for_variant(url, &values))?;
                (variant, values)
            }
        };
        match &entry.decoded.stored {
            Stored::Response(meta) if meta.vary_values == wanted && entry.decoded.url == url => {
                let meta = meta.clone();
                Some(Found { entry, meta })
            }
            _ => None,
        }
    }

    /// Checks a found entry's body before it is first served by this process.
    pub fn verify(&self, found: &mut Found) -> bool {
        self.store.is_verified(found.entry.key) || self.store.verify_body(&mut found.entry)
    }

    /// Becomes the one request fetching `url`, or waits (bounded) for the one that is.
    pub fn lock(&self, url: &str, wait: Duration) -> Lease {
        self.locks.acquire(Key::for_url(url), wait)
    }

    /// Starts storing a response. The head is stored without hop-by-hop and framing fields.
    pub fn writer(
        &self,
        url: &str,
        req: &RequestHead,
        response: &ResponseHead,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Option<EntryWriter> {
        let key = match policy::vary(response) {
            policy::Vary::Any => return None,
            policy::Vary::None => Key::for_url(url),
            policy::Vary::Headers(names) => {
                let marker = Stored::VaryMarker(names.clone());
                let writer = self.store.writer(Key::for_url(url), url, &marker, 0)?;
                writer.commit().ok()?;
                Key::for_variant(url, &policy::vary_values(req, &names))
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
        self.store
            .writer(key, url, &Stored::Response(meta), self.max_object_size)
    }

    /// Replaces a stored head after a 304 (RFC 9111 §4.3.4), keeping the body.
    pub fn update_head(&self, url: &str, found: &mut Found) -> io::Result<()> {
        let meta = ResponseMeta {
            head: storable_head(&found.meta.head),
            ..found.meta.clone()
        };
        let mut writer = self
            .store
            .writer(
                found.entry.key,
                url,
                &Stored::Response(meta),
                self.max_object_size,
            )
            .ok_or_else(|| io::Error::other("cannot write to the cache"))?;
        let mut body = io::Read::take(&found.entry.file, found.entry.decoded.body_len);
        if io::copy(&mut body, &mut writer)? != found.entry.decoded.body_len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        writer.commit()?;
        io::Seek::seek(
            &mut found.entry.file,
            io::SeekFrom::Start(found.entry.decoded.body_offset),
        )?;
        Ok(())
    }

    /// Forgets a URL (RFC 9111 §4.4 invalidation, PURGE). Returns whether something was stored.
    pub fn invalidate(&self, url: &str) -> bool {
        let key = Key::for_url(url);
        let existed = key.path(self.store.root()).exists();
        self.store.remove(key);
        existed
    }
}

/// A head as stored: no hop-by-hop fields and no framing (the length is the stored body's).
fn storable_head(response: &ResponseHead) -> ResponseHead {
    let mut head = response.clone();
    hop::strip(&mut head.headers);
    head.headers.remove("content-length");
    head
}
