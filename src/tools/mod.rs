//! What people try the proxy on, beside the product: `porter serve` (an origin server with files,
//! cookies, limits and faults), `porter fetch` (a client that goes direct, through a proxy or a
//! CONNECT tunnel) and `porter upper` (a TCP and UDP uppercase echo). They share the one `porter`
//! binary and use the crate's `http` and `net` layers, but nothing in `proxy` or `cache` depends on
//! them.

pub mod fetch;
pub mod serve;
pub mod upper;
