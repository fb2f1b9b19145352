//! Integration tests: the real `porter` binary driven over loopback sockets, a module per subcommand.

mod cache;
mod pool;
mod proxy;
mod util;
