//! The allow-list flags of `porter proxy`: `--allow-host` and `--allow-dest` (see `proxy::allow`).

use clap::Args;

use crate::net::acl::{Cidr, HostPattern};
use crate::proxy::upstream::allow::AllowRules;

/// `--allow-host` and `--allow-dest`.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// Allow only these destination hosts (repeatable): an exact host or `*.example.com`. Once this or
    /// --allow-dest is given, every destination neither admits gets 403; --deny-host and --deny-dest
    /// still win. Requests through a --parent are judged by their destination, never by the parent's
    /// address. Reloadable.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    pub allow_host: Vec<HostPattern>,

    /// Allow only these destination networks (repeatable), checked against the addresses a name
    /// resolves to and each address actually connected to. A destination is allowed when its name
    /// matches an --allow-host pattern or its address is in an --allow-dest network.
    #[arg(long = "allow-dest", value_name = "CIDR")]
    pub allow_dest: Vec<Cidr>,
}

impl AllowArgs {
    pub fn into_rules(self) -> AllowRules {
        AllowRules {
            hosts: self.allow_host,
            dests: self.allow_dest,
        }
    }
}
