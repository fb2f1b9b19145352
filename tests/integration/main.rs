//! Integration tests: the real `porter` binary driven over loopback sockets, a module per subcommand.

// The test servers and clients run on plain threads, never in a task: std's locks are right here
// (clippy.toml points the crate's own code at crate::runtime::Mutex).
#![allow(clippy::disallowed_types)]

mod allow;
mod browser;
mod cache;
mod collapse;
mod deploy;
mod docs;
mod eviction;
mod fetch;
mod file_modes;
mod forwarded_for;
mod hostile;
mod intercept;
mod logs;
mod packages;
mod parent;
mod pipelining;
mod pool;
mod proxy;
mod purge;
mod range_revalidation;
mod ranges;
mod refresh;
mod registry;
mod reload_timeouts;
mod rfc9111;
mod runtime;
mod serve;
mod setup;
mod slow_disk;
mod stale;
mod status;
mod tier;
mod tls;
mod upper;
mod usability;
mod util;
