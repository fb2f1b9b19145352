//! Read-while-writing: an entry whose body is still arriving, shared by the request that fetches it
//! (the writer) with every request for the same URL that comes meanwhile (the readers).
//!
//! The writer appends the body to the entry's temporary file and, after each piece, says how far it
//! got; readers share the writer's handle on that file (it survives the rename into place, and the
//! removal of a failed one; they read at offsets, never moving the writer's position), send what is
//! already there at once, then wait for more. The file is created by the writer's first write to the
//! disk, which can come after readers joined: the writer hands them the handle before it first
//! announces a byte ([`Inflight::set_file`]), and a small body's last write and commit are one job. The end is the writer's
//! to say, once: `Complete` after the entry is committed, `Failed` when the origin broke off or the
//! store gave up, which readers pass on by cutting their clients off where the writer stopped.
//!
//! ```text
//!  writer:  write ─ flush ─ advance(n) ─ … ─ commit ─ end(Complete)      (or drop ─ end(Failed))
//!  reader:  join ─┬─ wait_past(sent) ─> Grew(n) ─ send sent..n ─┐
//!                 │   ^──────────────────────────────────────────┘
//!                 └─> Complete(n) / Failed(n) / Stalled ─ leave (readers - 1)
//! ```
//!
//! The file's body region is only ever appended to, so the bytes a reader sends with sendfile(2) never
//! change under it. This module only keeps the shared state; the proxy serves the readers.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use super::conditional::has_preconditions;
use super::entry::ResponseMeta;
use super::policy::{self, Decision, StoredFreshness};
use crate::http::RequestHead;
use crate::runtime::{Mutex, MutexGuard, Signal};

/// With no reader left after the fetching client hung up, the fetch is still finished when at most
/// this much of a known length is missing (Squid's `quick_abort_min`, larger for today's links) …
pub const QUICK_ABORT_REMAINING: u64 = 1 << 20;
/// … or when at least this share of it (percent) has arrived already (Squid's `quick_abort_pct`).
pub const QUICK_ABORT_PERCENT: u64 = 90;

/// How the body's writing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The whole body arrived and the entry is stored.
    Complete,
    /// The origin broke off, or the store failed: nothing is stored.
    Failed,
}

/// What a reader learns when it asks for bytes past those it has sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// The body now has this many bytes in the file; more may come.
    Grew(u64),
    /// The body ended, with this many bytes, in the given way.
    Ended(End, u64),
    /// Nothing new within the wait: the writer is stuck longer than its own timeouts allow.
    Stalled,
}

#[derive(Debug)]
struct Progress {
    written: u64,
    end: Option<End>,
}

/// An entry being written, as readers see it.
pub struct Inflight {
    /// The head as it will be stored, and its freshness.
    pub meta: Arc<ResponseMeta>,
    pub freshness: Arc<StoredFreshness>,
    /// The body's length when the origin gave one (Content-Length).
    pub length: Option<u64>,
    /// Set by the writer before it first announces bytes: the temporary file is created by the
    /// first write that reaches the disk, after the entry is shared.
    file: OnceLock<Arc<File>>,
    body_offset: u64,
    progress: Mutex<Progress>,
    grew: Signal,
    readers: AtomicUsize,
}

impl Inflight {
    /// `file` is a read handle on the temporary file whose body starts at `body_offset`, when it
    /// exists already; otherwise the writer gives it with [`Inflight::set_file`] before it first
    /// advances.
    pub fn new(
        meta: Arc<ResponseMeta>,
        freshness: Arc<StoredFreshness>,
        length: Option<u64>,
        file: Option<Arc<File>>,
        body_offset: u64,
    ) -> Inflight {
        let once = OnceLock::new();
        if let Some(file) = file {
            let _ = once.set(file);
        }
        Inflight {
            meta,
            freshness,
            length,
            file: once,
            body_offset,
            progress: Mutex::new(Progress {
                written: 0,
                end: None,
            }),
            grew: Signal::default(),
            readers: AtomicUsize::new(0),
        }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this entry may answer `req` while it is written, as it could once stored: the same Vary
    /// variant, and a policy decision to serve it. Conditional requests are left to go their own way:
    /// the client has a copy, and a 304 needs the validators a whole entry has.
    pub fn answers(&self, req: &RequestHead, now: SystemTime) -> bool {
        self.answers_with(req, &policy::CacheControl::parse_request(&req.headers), now)
    }

    /// [`Inflight::answers`] with the request's directives as the proxy decided to read them (a
    /// reload dropped by `ignore-reload` or by [`Inflight::received_since`]).
    pub fn answers_with(
        &self,
        req: &RequestHead,
        want: &policy::CacheControl,
        now: SystemTime,
    ) -> bool {
        let variant = match policy::vary(&self.meta.head) {
            policy::Vary::None => true,
            policy::Vary::Any => false,
            policy::Vary::Headers(names) => {
                policy::vary_values(req, &names) == self.meta.vary_values
            }
        };
        let conditional = has_preconditions(req);
        // A part (206) answers only the range its own request asked for.
        variant
            && self.meta.head.status != 206
            && !conditional
            && matches!(
                policy::decide_with(want, &self.freshness, now),
                Decision::Fresh | Decision::StaleAllowed
            )
    }

    /// Whether the response head came from the origin at or after `asked`: then it is as new as what
    /// a request sent at `asked` would get, and answers a client's reload (`no-cache`, `max-age=0`)
    /// as well as the client's own request would.
    pub fn received_since(&self, asked: SystemTime) -> bool {
        self.meta.response_time >= asked
    }

    /// The file, for sending `[body_offset + from, body_offset + to)`; see [`Inflight::body_offset`].
    /// There once the writer announced a byte ([`Inflight::set_file`]); `None` only before.
    pub fn file(&self) -> Option<&File> {
        self.file.get().map(|file| &**file)
    }

    /// Gives readers their handle on the file; only the first counts. Before the first
    /// [`Inflight::advance`] of a non-zero length.
    pub fn set_file(&self, file: Arc<File>) {
        let _ = self.file.set(file);
    }

    /// Whether readers have their handle on the file.
    pub fn has_file(&self) -> bool {
        self.file.get().is_some()
    }

    pub fn body_offset(&self) -> u64 {
        self.body_offset
    }

    /// Counts a reader in until the returned guard is dropped.
    pub fn join(self: &Arc<Self>) -> Reader {
        self.readers.fetch_add(1, Ordering::SeqCst);
        Reader {
            inflight: Arc::clone(self),
        }
    }

    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::SeqCst)
    }

    /// Blocks until the body has more than `sent` bytes or has ended, for at most `wait`.
    pub fn wait_past(&self, sent: u64, wait: Duration) -> Growth {
        let mut progress = self.progress();
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(end) = progress.end {
                return Growth::Ended(end, progress.written);
            }
            if progress.written > sent {
                return Growth::Grew(progress.written);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Growth::Stalled;
            }
            progress = self.grew.wait_timeout(&self.progress, progress, left);
        }
    }

    /// The writer has `written` body bytes in the file (flushed, so readers can read them).
    pub fn advance(&self, written: u64) {
        let mut progress = self.progress();
        if progress.end.is_none() {
            progress.written = written;
            self.grew.notify_all();
        }
    }

    /// The writer is done; only the first end counts.
    pub fn end(&self, end: End) {
        let mut progress = self.progress();
        if progress.end.is_none() {
            progress.end = Some(end);
            self.grew.notify_all();
        }
    }
}

/// A reader's place among an entry's readers.
pub struct Reader {
    inflight: Arc<Inflight>,
}

impl Reader {
    pub fn inflight(&self) -> &Inflight {
        &self.inflight
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.inflight.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// With the fetching client gone and no reader left, whether finishing the fetch is still worth it:
/// only when little of a known length is missing. An unknown length is not finished for nobody.
pub fn finish_for_nobody(received: u64, length: Option<u64>) -> bool {
    let Some(length) = length else {
        return false;
    };
    let missing = length.saturating_sub(received);
    missing <= QUICK_ABORT_REMAINING || received.saturating_mul(100) >= length * QUICK_ABORT_PERCENT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseHead;
    use std::time::SystemTime;

    fn inflight() -> Arc<Inflight> {
        let meta = Arc::new(ResponseMeta {
            head: ResponseHead::new(200),
            request_time: SystemTime::UNIX_EPOCH,
            response_time: SystemTime::UNIX_EPOCH,
            vary_values: Vec::new(),
        });
        let freshness = Arc::new(StoredFreshness::of(
            &meta.head,
            meta.request_time,
            meta.response_time,
        ));
        let file = tempfile::tempfile().unwrap();
        Arc::new(Inflight::new(
            meta,
            freshness,
            Some(10),
            Some(Arc::new(file)),
            0,
        ))
    }

    #[test]
    fn readers_see_growth_then_the_one_end() {
        let shared = inflight();
        let short = Duration::from_millis(10);
        assert_eq!(shared.wait_past(0, short), Growth::Stalled);
        shared.advance(4);
        assert_eq!(shared.wait_past(0, short), Growth::Grew(4));
        assert_eq!(shared.wait_past(4, short), Growth::Stalled);
        let waiter = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || shared.wait_past(4, Duration::from_secs(10)))
        };
        shared.advance(10);
        assert_eq!(waiter.join().unwrap(), Growth::Grew(10));
        shared.end(End::Failed);
        shared.end(End::Complete);
        shared.advance(12);
        assert_eq!(shared.wait_past(10, short), Growth::Ended(End::Failed, 10));
    }

    #[test]
    fn only_requests_the_stored_entry_would_answer_may_read_along() {
        use crate::cache::testutil::{at, date, req};
        let d = date(0);
        let mut head = ResponseHead::new(200);
        head.headers.append("Cache-Control", "max-age=60");
        head.headers.append("Vary", "Accept-Language");
        head.headers.append("Date", d);
        let freshness = Arc::new(StoredFreshness::of(&head, at(0), at(0)));
        let meta = Arc::new(ResponseMeta {
            head,
            request_time: at(0),
            response_time: at(0),
            vary_values: vec![("accept-language".into(), "de".into())],
        });
        let shared = Inflight::new(
            meta,
            freshness,
            None,
            Some(Arc::new(tempfile::tempfile().unwrap())),
            0,
        );
        assert!(shared.answers(&req("GET", &[("Accept-Language", "de")]), at(1)));
        assert!(!shared.answers(&req("GET", &[("Accept-Language", "en")]), at(1)));
        assert!(!shared.answers(&req("GET", &[]), at(1)), "another variant");
        let reload = [("Accept-Language", "de"), ("Cache-Control", "no-cache")];
        assert!(!shared.answers(&req("GET", &reload), at(1)));
        let conditional = [("Accept-Language", "de"), ("If-None-Match", "\"x\"")];
        assert!(!shared.answers(&req("GET", &conditional), at(1)));
    }

    #[test]
    fn readers_are_counted_while_joined() {
        let shared = inflight();
        let (a, b) = (shared.join(), shared.join());
        assert_eq!(shared.readers(), 2);
        drop(a);
        assert_eq!(b.inflight().readers(), 1);
        drop(b);
        assert_eq!(shared.readers(), 0);
    }

    #[test]
    fn a_fetch_nobody_reads_is_finished_only_when_nearly_done() {
        let mib = 1 << 20;
        assert!(finish_for_nobody(11 * mib, Some(12 * mib)), "1 MiB missing");
        assert!(!finish_for_nobody(mib, Some(12 * mib)));
        assert!(finish_for_nobody(91 * mib, Some(100 * mib)), "91 % there");
        assert!(!finish_for_nobody(50 * mib, Some(100 * mib)));
        assert!(!finish_for_nobody(mib, None), "unknown length");
    }
}
