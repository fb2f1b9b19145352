//! Porter: a forward caching HTTP proxy, with the origin server, client and echo tools to test it.
//!
//! The product, from the bottom up: `http` knows the protocol (no sockets), `runtime` the tasks, the
//! workers' event loops and their waits, `net` the sockets and threads on it, `tls` HTTPS
//! interception's CA, leaves and TLS streams, `cache` the stored responses (policy, disk, memory,
//! collapsed misses), and `proxy` the forwarding that puts them together (`proxy::flow` is the
//! request path). `html` writes the few pages Porter makes itself; `cli` and `config_file` turn flags
//! and TOML into config structs. `tools` is what people try the proxy on: `porter serve`,
//! `porter fetch` and `porter upper`. The binary in `main.rs` only parses the command line and calls
//! in here.

#![deny(unsafe_code)]

pub mod access_log;
pub mod cache;
pub mod cli;
pub mod config_file;
pub mod fnv;
pub mod html;
pub mod http;
pub mod net;
pub mod perms;
pub mod printable;
pub mod proxy;
pub mod runtime;
pub mod timefmt;
pub mod tls;
pub mod tools;
pub mod units;
