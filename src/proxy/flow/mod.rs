//! The request path of an absolute-form request, after `Proxy::dispatch` admitted it: parse the
//! target, then forward it through the cache or past it.
//!
//! ```text
//!  target (canonical_url) ─> fetch::forward ─┬─ GET/HEAD ─> cached::through_cache ─┬─ hit ─> ranges
//!                                            │                                     ├─ being stored ─> collapsed
//!                                            │                                     ├─ stale ─> stale, background
//!                                            │                                     └─ miss ─> fetch ─> leader
//!                                            ├─ GET/HEAD of a URL naming a digest ─> digest::through_digest
//!                                            └─ other ───> pass ─> fetch ─> relay; updates
//! ```
//!
//! `forward` is the wire work under `fetch` (rewriting the request, X-Forwarded-For from
//! `forwarded_for`, copying bodies); dialling is `upstream`'s, the pages `ops`'.

pub(super) mod background;
mod cached;
mod canonical_url;
mod collapsed;
mod digest;
mod fetch;
pub mod forward;
pub mod forwarded_for;
mod leader;
mod ranges;
mod stale;
pub mod target;
mod updates;
