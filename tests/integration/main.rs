//! Integration tests: the real `porter` binary driven over loopback sockets, a module per subcommand.

mod proxy;
mod serve;
mod util;
