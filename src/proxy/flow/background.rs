//! Background revalidation for `stale-while-revalidate` (RFC 5861 §3): the client got the stale entry
//! at once; here the origin is asked whether it is still good, and the entry is refreshed (304) or
//! replaced (a new storable response) for the next clients.
//!
//! ```text
//!  through_cache ─ stale, within the window ─ cache.lock (no wait) ─┬─ Leader ─> submit ─> serve stale
//!                                                                   └─ taken ─────────────> serve stale
//!  revalidate-N thread: dial ─ GET with validators ─┬─ 304 ─> update the stored head
//!                                                   ├─ storable ─> store the new response
//!                                                   └─ other / failure ─> keep the entry as it is
//!  the lease is dropped at the end: one origin request per URL however many clients came
//! ```
//!
//! Two named threads take jobs from a bounded channel; when it is full, the job is dropped (the
//! client was served anyway, and a later one will ask again). A job dials its own connection: the
//! worker's pool is not shared with these threads, and a revalidation per URL per window is rare.

use std::io::{self, Write};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::forward;
use super::target::Target;
use crate::cache::lock::LeaderGuard;
use crate::cache::{Cache, Found, policy};
use crate::http::body::{BodyMode, BodyReader};
use crate::http::{Limits, RequestHead, write};
use crate::proxy::upstream::dest::DestRules;
use crate::proxy::{ProxyError, upstream};
use crate::tls::UpstreamTls;

const THREADS: usize = 2;
const QUEUE: usize = 64;

/// One revalidation to do.
pub struct Job {
    pub req: RequestHead,
    pub target: Target,
    pub found: Found,
    /// Held until the job is done, so no other request revalidates the URL meanwhile.
    pub lease: LeaderGuard,
    /// The TLS setup for an https:// target (with `--intercept`).
    pub tls: Option<UpstreamTls>,
}

/// The queue of background revalidations.
pub struct Revalidator {
    jobs: Sender<Job>,
}

/// What a background revalidation came to, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refreshed {
    /// 304: the stored head was updated.
    NotModified,
    /// A new response was stored in place of the old.
    Replaced,
    /// Another answer, not stored: the entry stays as it was until it expires from the window.
    Kept(u16),
    /// The proxy is shutting down: nothing was asked.
    ShuttingDown,
}

/// What a job needs from the proxy. The cache is held weakly: when the proxy goes, so does the cache
/// (and its control socket), without waiting for these threads.
struct Context {
    cache: Weak<Cache>,
    via: String,
    limits: Limits,
    origin_timeout: Duration,
    /// The destination rules: a background dial obeys `--deny-dest` like any other.
    rules: DestRules,
}

impl Revalidator {
    pub fn start(
        cache: &Arc<Cache>,
        via: String,
        limits: Limits,
        origin_timeout: Duration,
        rules: DestRules,
    ) -> io::Result<Revalidator> {
        let (jobs, queue) = crossbeam_channel::bounded(QUEUE);
        let context = Arc::new(Context {
            cache: Arc::downgrade(cache),
            via,
            limits,
            origin_timeout,
            rules,
        });
        for n in 0..THREADS {
            let (queue, context): (Receiver<Job>, _) = (queue.clone(), Arc::clone(&context));
            std::thread::Builder::new()
                .name(format!("revalidate-{n}"))
                .spawn(move || {
                    // Ends when the proxy, and with it the sender, is dropped.
                    for job in queue {
                        let url = job.target.url.clone();
                        match context.run(job) {
                            Ok(done) => log::debug!("background revalidation of {url}: {done:?}"),
                            Err(e) => log::info!("background revalidation of {url} failed: {e}"),
                        }
                    }
                })?;
        }
        Ok(Revalidator { jobs })
    }

    /// Queues a job; `false` when the queue is full (the job and its lease are dropped).
    pub fn submit(&self, job: Job) -> bool {
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Context {
    fn run(&self, job: Job) -> Result<Refreshed, ProxyError> {
        let Some(cache) = self.cache.upgrade() else {
            return Ok(Refreshed::ShuttingDown);
        };
        let Job {
            req,
            target,
            mut found,
            lease,
            tls,
        } = job;
        let mut outbound = forward::outbound_request(&req, &target, &self.via, BodyMode::NoBody);
        super::fetch::with_own_validators(&mut outbound, &policy::validators(&found.meta.head));
        let mut bytes = Vec::with_capacity(512);
        write::request_head(&mut bytes, &outbound);
        let request_time = SystemTime::now();
        let mut origin = upstream::dial(
            &self.rules,
            target.scheme,
            &target.host,
            target.port,
            self.origin_timeout,
            tls.as_ref(),
        )?;
        origin
            .stream
            .write_all(&bytes)
            .map_err(ProxyError::OriginIo)?;
        let head = forward::read_final_head(&mut origin, &self.limits, |_| Ok(()))?;
        let response_time = SystemTime::now();
        if head.status == 304 {
            let meta = Arc::make_mut(&mut found.meta);
            policy::freshen(meta, &head, request_time, response_time);
            cache
                .update_head(&target.url, &mut found)
                .map_err(ProxyError::CacheRead)?;
            return Ok(Refreshed::NotModified);
        }
        let mode = forward::upstream_framing(&req, &head)?;
        let storable = policy::storable(&req, &head).is_ok()
            && match mode {
                BodyMode::CloseDelimited => false,
                BodyMode::Length(n) => n <= cache.max_object_size(),
                _ => true,
            };
        if !storable {
            return Ok(Refreshed::Kept(head.status));
        }
        let Ok(writer) = cache.writer(&target.url, &req, &head, request_time, response_time) else {
            return Ok(Refreshed::Kept(head.status));
        };
        let mut reader = BodyReader::new(mode, &mut origin.buf, &mut origin.stream);
        forward::copy(&mut reader, &mut io::sink(), Some(writer)).map_err(|e| match e {
            forward::CopyError::Read(e) => ProxyError::from_origin_read(e),
            forward::CopyError::Write(e) | forward::CopyError::Store(e) => ProxyError::CacheRead(e),
        })?;
        drop(lease);
        Ok(Refreshed::Replaced)
    }
}
