//! The response cache: `policy` decides (pure RFC 9111 rules), the store keeps.

mod conditional;
mod directives;
mod freshness;
pub mod policy;
#[cfg(test)]
mod testutil;
mod vary;
