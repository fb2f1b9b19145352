//! Porter: a forward caching HTTP proxy, with the origin server, client and echo tools to test it.
//!
//! `http` knows the protocol, `runtime` the tasks, the workers' event loops and their waits, `net` the sockets and threads on it, `proxy` the forwarding, and `cache` the
//! stored responses; `html` writes the few pages Porter makes itself; `tls` is HTTPS interception's CA, leaves and TLS streams. `client` is `porter fetch`, and `upper` the uppercase echo exercise. The binary in
//! `main.rs` only parses the command line and calls in here.

#![deny(unsafe_code)]

pub mod access_log;
pub mod cache;
pub mod cli;
pub mod config_file;
pub mod html;
pub mod http;
pub mod net;
pub mod proxy;
pub mod runtime;
pub mod timefmt;
pub mod tls;
pub mod tools;
pub mod units;
