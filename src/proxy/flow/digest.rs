//! GET and HEAD of URLs that name a digest (`cache::digest`): container registry blobs and
//! manifests by digest, apt's by-hash files, `--digest-url` matches, and the storage URLs registries
//! redirect blob requests to. Their bodies are stored once by digest and served for every URL that
//! names it, while the registry keeps the say on who may have them.
//!
//! ```text
//!  through_digest ─┬─ HEAD, Range or no-store ───────────────────────> pass
//!                  ├─ stored without credentials, asked without them ─> serve (digest-hit)
//!                  ├─ stored, asked with credentials (or stored with them), of a registry that
//!                  │   sent the bytes before ─ HEAD to the registry
//!                  │     ├─ 200 or a redirect ─> serve the stored object (digest-auth-checked)
//!                  │     └─ anything else (401, 403, 404) ─> the client's own request, relayed;
//!                  │          nothing of the object is sent (digest-refused)
//!                  ├─ stored, but of another registry, or a redirect target ─┐
//!                  └─ not stored ─ one fetch per digest (cache.lock), the others wait and look again
//!                                  the client's request ─┬─ 200 ─> relay, storing it if its SHA-256 is
//!                                                        │        the digest (digest-stored / digest-mismatch)
//!                                                        ├─ redirect ─> note the target's digest, relay
//!                                                        └─ other ─> relay
//! ```
//!
//! A shared cache may not serve a response to a request with `Authorization` to others (RFC 9111
//! §3.5); here the bytes are the digest's, not the response's, so what is checked is only whether
//! the registry grants this client the blob: a HEAD, which moves no body. Only a registry that has
//! sent the object's bytes (checked) is asked: any other could answer yes without holding them,
//! so it sends them once (a layer shared by two registries is still stored once). An object first
//! fetched without credentials was anyone's to have, and is served to requests without
//! credentials without asking. A registry that redirects a blob request to a signed URL has its
//! answer replaced by the stored object (200 with Docker-Content-Digest), so the storage host sees
//! nothing.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use url::Url;

use super::fetch::{Ask, Fetched};
use super::forward;
use super::target::Target;
use crate::cache::Cache;
use crate::cache::digest::name::{Kind, Named};
use crate::cache::digest::redirects::Noted;
use crate::cache::digest::{DigestStats, Fill, FillOutcome, Object};
use crate::cache::lock::Lease;
use crate::cache::policy::CacheControl;
use crate::cache::status::{CacheStatus, Forward, NotStored};
use crate::http::body::BodyMode;
use crate::http::{self, Method, write};
use crate::net::sendfile::SendFile;
use crate::proxy::exchange::{Exchange, Failure, Reuse, Served};
use crate::proxy::ops::metrics::Outcome;
use crate::proxy::{Proxy, ProxyError};

/// A request whose URL names a digest: by its own shape or rule, or as a noted redirect target.
#[derive(Debug, Clone)]
pub(in crate::proxy) struct Addressed {
    named: Named,
    /// For a redirect target: what the redirect noted.
    noted: Option<Noted>,
}

/// What applied, in the access log's `detail` and the Cache-Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// Served without asking the registry.
    Hit,
    /// Served after the registry said yes (200 or a redirect) to a HEAD with the client's
    /// credentials.
    AuthChecked,
}

impl Detail {
    fn as_str(self) -> &'static str {
        match self {
            Detail::Hit => "digest-hit",
            Detail::AuthChecked => "digest-auth-checked",
        }
    }
}

impl Proxy {
    /// The digest `ex`'s URL names, if any: its shape or a `--digest-url` rule, or a redirect
    /// target a blob request was answered with.
    pub(in crate::proxy) fn addressed(&self, cache: &Cache, url: &str) -> Option<Addressed> {
        if let Some(named) = cache.digest_named(url) {
            return Some(Addressed { named, noted: None });
        }
        let digests = cache.digests();
        if digests.redirects.is_empty() {
            return None;
        }
        let noted = digests.redirects.get(url, Instant::now())?;
        Some(Addressed {
            named: Named {
                digest: noted.digest,
                kind: Kind::Redirect,
            },
            noted: Some(noted),
        })
    }

    /// GET or HEAD of a URL naming a digest; see the module docs.
    pub(in crate::proxy) fn through_digest(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        addressed: Addressed,
    ) -> Served {
        let directives = CacheControl::parse_request(&ex.req.headers);
        // Stored objects answer whole bodies; a range goes to the origin as asked. A HEAD moves no
        // body, and is how clients ask whether a repository holds a blob (a push checks before it
        // uploads): only the registry can say, whatever is stored.
        if directives.no_store || ex.req.headers.contains("range") || ex.head_only() {
            return self.pass(ex);
        }
        let credentials = ex.req.headers.contains("authorization");
        let origin = origin_of(&ex.target);
        // Who vouches for the bytes if they match: the registry itself, or the one that
        // redirected here.
        let (public, vouching) = match &addressed.noted {
            Some(noted) => (noted.public, noted.registry.as_str()),
            None => (!credentials, origin.as_str()),
        };
        let named = addressed.named;
        let mut found = cache.digest_object(named.digest);
        // One fetch per digest at a time: parallel pulls of one layer (or of the signed URLs one
        // layer is redirected to) wait, bounded, for the first, then find it stored. The lease is
        // held through the fill, and let go at once when the object turned up meanwhile.
        let mut _lease = None;
        if found.is_none() && !directives.only_if_cached {
            let wait = self.config.load().origin_timeout;
            if let Lease::Leader(guard) = cache.lock(&named.digest.store_url(), wait) {
                _lease = Some(guard);
            }
            found = cache.digest_object(named.digest);
            if found.is_some() {
                _lease = None;
            }
        }
        let named_by_url = addressed.noted.is_none();
        match found {
            Some(object) if named_by_url && object.public && !credentials => {
                self.serve_object(cache, ex, object, Detail::Hit)
            }
            // Only a registry that sent the bytes is asked whether a client may have them: any
            // other could say yes without holding them.
            Some(object)
                if named_by_url
                    && !directives.only_if_cached
                    && cache.digest_vouches(&object, &origin) =>
            {
                self.check_then_serve(cache, ex, named, object)
            }
            // A registry that never sent the object, or a redirect target (any URL a registry
            // named, which only its host's answer says the content of: a registry of one's own
            // could otherwise point a popular URL at any stored object): fetched and relayed as
            // the origin sends it, and checked, which proves the registry holds the object.
            // only-if-cached (RFC 9111 §5.2.1.7): what needs the origin is not served from here.
            _ if directives.only_if_cached => {
                ex.entry.outcome = Outcome::Miss;
                Err(ProxyError::NotCached.into())
            }
            Some(_) | None => self.fill(cache, ex, named, (public, vouching)),
        }
    }

    /// Asks the registry (HEAD, with the client's credentials) whether this client may have the
    /// object, and serves it only on 200 or a redirect.
    fn check_then_serve(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        named: Named,
        object: Object,
    ) -> Served {
        let method = std::mem::replace(&mut ex.req.method, Method::Head);
        let asked = self.fetch(ex, Ask::Revalidate(&[]));
        ex.req.method = method;
        let fetched = asked?;
        let status = fetched.head.status;
        if grants(status) {
            self.note_redirect(cache, ex, &fetched, named, false);
            self.checkin(ex, fetched);
            DigestStats::add(&cache.digests().stats.auth_checked, 1);
            return self.serve_object(cache, ex, object, Detail::AuthChecked);
        }
        drop(object);
        if matches!(status, 401 | 403) {
            DigestStats::add(&cache.digests().stats.refused, 1);
        }
        ex.entry.outcome = Outcome::Pass;
        let not_confirmed = CacheStatus::Forwarded {
            fwd: Forward::Miss,
            stored: Err(NotStored::Policy(
                crate::cache::policy::NoStore::Authorization,
            )),
        };
        // The registry's own answer to the client's request, body and all: its 401 with
        // WWW-Authenticate, its 404 for a repository that does not hold the blob.
        self.checkin(ex, fetched);
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        let served = self.relay(ex, fetched, Some(not_confirmed), None);
        ex.entry.detail = Some("digest-refused");
        served
    }

    /// Nothing stored: the client's request goes to the registry, and a 200's body is stored
    /// under the digest if it matches it.
    fn fill(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        named: Named,
        (public, vouching): (bool, &str),
    ) -> Served {
        ex.entry.outcome = Outcome::Miss;
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        if self.note_redirect(cache, ex, &fetched, named, public) {
            let status = CacheStatus::Forwarded {
                fwd: Forward::Miss,
                stored: Err(NotStored::Policy(crate::cache::policy::NoStore::Status)),
            };
            let served = self.relay(ex, fetched, Some(status), None);
            ex.entry.detail = Some("digest-redirect");
            return served;
        }
        let storable = ex.req.method == Method::Get && fetched.head.status == 200;
        let outcome = Arc::new(FillOutcome::default());
        let writer = match fetched.mode {
            _ if !storable => Err(NotStored::Policy(crate::cache::policy::NoStore::Status)),
            BodyMode::CloseDelimited => Err(NotStored::CloseDelimited),
            BodyMode::Length(n) if n > cache.max_object_size() => Err(NotStored::TooLarge),
            _ => cache
                .digest_writer(
                    named.digest,
                    &fetched.head,
                    (public, vouching),
                    Arc::clone(&outcome),
                )
                .ok_or(NotStored::StoreFailed),
        };
        let status = CacheStatus::Forwarded {
            fwd: Forward::Miss,
            stored: writer.as_ref().map(|_| ()).map_err(|reason| *reason),
        };
        let storing = writer.is_ok();
        let served = self.relay(ex, fetched, Some(status), writer.ok());
        if storing {
            ex.entry.detail = Some(match outcome.get() {
                Fill::Stored => "digest-stored",
                Fill::Mismatch => "digest-mismatch",
                Fill::NotStored => "digest-not-stored",
            });
        }
        served
    }

    /// Notes the target of a redirect a blob request was answered with, so the client's request
    /// for it is stored under the digest. Whether the response was a redirect with a target.
    fn note_redirect(
        &self,
        cache: &Cache,
        ex: &Exchange,
        fetched: &Fetched,
        named: Named,
        public: bool,
    ) -> bool {
        if !matches!(fetched.head.status, 301 | 302 | 303 | 307 | 308) {
            return false;
        }
        let Some(target) = fetched
            .head
            .headers
            .get("location")
            .and_then(|location| redirect_target(&ex.target, location))
        else {
            return false;
        };
        let noted = Noted {
            digest: named.digest,
            public,
            registry: origin_of(&ex.target),
        };
        cache
            .digests()
            .redirects
            .note(target, noted, Instant::now());
        true
    }

    /// Sends a stored object: 200 (or 304 when the client's If-None-Match names the digest) with
    /// Content-Type, Content-Length, Docker-Content-Digest and an ETag of the digest; the body goes
    /// file-to-socket with sendfile(2).
    fn serve_object(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        object: Object,
        detail: Detail,
    ) -> Served {
        let oci = object.digest.oci();
        let etag = format!("\"{oci}\"");
        let not_modified = ex
            .req
            .headers
            .list("if-none-match")
            .any(|tag| tag == etag || tag == oci || tag == "*");
        let status = if not_modified { 304 } else { 200 };
        let mut out = Vec::with_capacity(512);
        write::status_line(&mut out, status, http::reason_phrase(status));
        let content_type = object.content_type.as_deref();
        write::field(
            &mut out,
            "Content-Type",
            content_type
                .unwrap_or("application/octet-stream")
                .as_bytes(),
        );
        if !not_modified {
            write::field(
                &mut out,
                "Content-Length",
                object.len.to_string().as_bytes(),
            );
        }
        write::field(&mut out, "Docker-Content-Digest", oci.as_bytes());
        write::field(&mut out, "ETag", etag.as_bytes());
        let mut via = Vec::new();
        forward::append_via_value(&mut via, http::Version::Http11, &self.via);
        if !via.is_empty() {
            write::field(&mut out, "Via", &via);
        }
        let cache_status = format!("porter; hit; detail={}", detail.as_str());
        write::field(&mut out, "Cache-Status", cache_status.as_bytes());
        write::field(&mut out, "X-Cache", b"HIT");
        if let Some(value) = http::connection_field(ex.req.version, ex.keep_alive) {
            write::field(&mut out, "Connection", value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        ex.entry.outcome = Outcome::Hit;
        ex.entry.detail = Some(detail.as_str());
        ex.entry.status = status;
        ex.entry.content_type = content_type.map(str::to_string);
        let stats = &cache.digests().stats;
        DigestStats::add(&stats.hits, 1);
        let sent = |e| Failure::AfterHead(ProxyError::ClientIo(e));
        let stream = &mut ex.conn.stream;
        stream.write_all(&out).map_err(sent)?;
        ex.entry.bytes = out.len() as u64;
        if not_modified || ex.req.method == Method::Head {
            return Ok(Reuse::when(ex.keep_alive));
        }
        let offset = object.entry.decoded.body_offset;
        let copied = stream
            .send_file(&object.entry.file, offset, object.len)
            .map_err(sent)?;
        ex.entry.bytes += copied;
        DigestStats::add(&stats.served_bytes, copied);
        if copied != object.len {
            return Err(Failure::AfterHead(ProxyError::CacheRead(
                io::ErrorKind::UnexpectedEof.into(),
            )));
        }
        Ok(Reuse::when(ex.keep_alive))
    }
}

/// `scheme://host:port` of a request's target: who vouches for what it sent.
fn origin_of(target: &Target) -> String {
    format!(
        "{}://{}:{}",
        target.scheme.as_str(),
        target.host,
        target.port
    )
}

/// Whether the registry's answer to the HEAD grants the client the blob: 200, or a redirect to
/// where it is stored (RFC 9110 §15.4; 304 is not asked for, the client's conditionals are not
/// sent).
fn grants(status: u16) -> bool {
    matches!(status, 200 | 301 | 302 | 303 | 307 | 308)
}

/// A Location value resolved against the request's URL and normalised as Porter normalises request
/// targets (plain http, or https inside an intercepted tunnel), so the client's request for it
/// finds it; `None` for other schemes or a value that is no URL.
fn redirect_target(base: &Target, location: &str) -> Option<String> {
    let resolved = Url::parse(&base.url).ok()?.join(location).ok()?;
    match resolved.scheme() {
        "http" => Target::parse_absolute(resolved.as_str())
            .ok()
            .map(|t| t.url),
        "https" => {
            let host = resolved
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']');
            let port = resolved.port_or_known_default()?;
            let mut path_and_query = resolved.path().to_string();
            if let Some(query) = resolved.query() {
                path_and_query.push('?');
                path_and_query.push_str(query);
            }
            Target::https(host, port, &path_and_query)
                .ok()
                .map(|t| t.url)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_are_normalised_as_request_targets_are() {
        let base = Target::parse_absolute("http://r.test:5000/v2/a/blobs/sha256:ab").unwrap();
        let signed = "https://Storage.test/b/ab?X-Sig=1%2F2&Expires=9";
        let target = redirect_target(&base, signed).unwrap();
        let inside_tunnel = Target::https("storage.test", 443, "/b/ab?X-Sig=1%2F2&Expires=9");
        assert_eq!(target, inside_tunnel.unwrap().url);
        let plain = redirect_target(&base, "http://storage.test:8080/b?s=2").unwrap();
        let absolute = Target::parse_absolute("http://storage.test:8080/b?s=2").unwrap();
        assert_eq!(plain, absolute.url);
        assert_eq!(
            redirect_target(&base, "/blobs/x?s=1").unwrap(),
            "http://r.test:5000/blobs/x?s=1"
        );
        assert_eq!(redirect_target(&base, "ftp://x.test/"), None);
    }

    #[test]
    fn only_success_and_redirects_grant_the_blob() {
        for status in [200, 302, 307, 308] {
            assert!(grants(status), "{status}");
        }
        for status in [204, 206, 304, 401, 403, 404, 405, 500] {
            assert!(!grants(status), "{status}");
        }
    }
}
