//! Integration tests: the real `porter` binary driven over loopback sockets, a module per subcommand.

mod browser;
mod cache;
mod collapse;
mod deploy;
mod fetch;
mod file_modes;
mod hostile;
mod intercept;
mod logs;
mod parent;
mod pipelining;
mod pool;
mod proxy;
mod purge;
mod range_revalidation;
mod ranges;
mod refresh;
mod reload_timeouts;
mod rfc9111;
mod serve;
mod stale;
mod status;
mod tier;
mod tls;
mod upper;
mod util;
