//! Integration tests: the real `porter` binary driven over loopback sockets, a module per subcommand.

mod browser;
mod cache;
mod fetch;
mod hostile;
mod intercept;
mod pool;
mod proxy;
mod ranges;
mod refresh;
mod rfc9111;
mod serve;
mod tls;
mod upper;
mod util;
