//! The allow list (`--allow-host PATTERN`, `--allow-dest CIDR`): once either is given, a destination
//! that no allow rule admits is refused with 403, as Squid's `http_access deny all` after its
//! `dstdomain` allows and tinyproxy's `FilterDefaultDeny` do.
//!
//! A destination is admitted when its name matches an `--allow-host` pattern OR an address it
//! resolves to is in an `--allow-dest` network. Deny rules are checked first and win. The name is
//! judged where the request is admitted (`Proxy::denied_host`, so a cache hit, a CONNECT, an
//! intercepted request and a request routed to a parent are all judged by their destination);
//! `--allow-dest` is judged there on the addresses the name resolves to, and again, for direct
//! dials, on each address actually connected to (`dest::DestRules::check_for`), so a DNS answer that
//! changes in between cannot be used to get past it. Dials to a parent proxy are never judged by
//! the allow list: the request they carry was.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::net::acl::{Cidr, HostPattern, effective_ip, ip_literal};
use crate::proxy::ProxyConfig;

/// The rule set named in every refusal.
pub const RULE_SET: &str = "--allow-host, --allow-dest";

/// `--allow-host` and `--allow-dest`; both empty means the allow list is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowRules {
    /// Destination names admitted (same syntax as `--deny-host`).
    pub hosts: Vec<HostPattern>,
    /// Destination networks admitted, checked against resolved addresses.
    pub dests: Vec<Cidr>,
}

impl AllowRules {
    /// Whether any allow rule is configured, which turns every other destination away.
    pub fn is_active(&self) -> bool {
        !self.hosts.is_empty() || !self.dests.is_empty()
    }

    /// Whether the name alone admits `host`: the list is off, or an `--allow-host` pattern (or an
    /// `--allow-dest` network, for an IP literal) covers it.
    pub fn admits_name(&self, host: &str) -> bool {
        !self.is_active()
            || self.hosts.iter().any(|p| p.matches(host))
            || ip_literal(host).is_some_and(|ip| self.admits_ip(ip))
    }

    /// Whether a connection to `ip`, resolved from `host`, is admitted.
    pub fn admits(&self, host: &str, ip: IpAddr) -> bool {
        self.admits_name(host) || self.admits_ip(ip)
    }

    fn admits_ip(&self, ip: IpAddr) -> bool {
        let ip = effective_ip(ip);
        self.dests.iter().any(|c| c.contains(ip))
    }

    /// The refusal's text, for the 403 page and the log.
    pub fn refusal(host: &str) -> String {
        format!("access to {host} is not in the allow list ({RULE_SET})")
    }
}

/// The allow list as the dial rules see it: read from the live configuration at each check, so
/// the upstream pool and the background revalidation threads follow a reload with nothing to copy
/// (the configuration is the one place it is held). The default is no list, for dialling a parent.
#[derive(Clone, Default)]
pub struct LiveAllow(Option<Arc<ArcSwap<ProxyConfig>>>);

impl LiveAllow {
    /// The allow list of `config`, whatever a reload stores there.
    pub fn of(config: Arc<ArcSwap<ProxyConfig>>) -> LiveAllow {
        LiveAllow(Some(config))
    }

    /// Whether a connection to `ip`, resolved from `host`, is admitted by the current rules.
    pub fn admits(&self, host: &str, ip: IpAddr) -> bool {
        self.0
            .as_ref()
            .is_none_or(|config| config.load().allow.admits(host, ip))
    }
}

impl fmt::Debug for LiveAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(config) => config.load().allow.fmt(f),
            None => f.write_str("no allow list"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(hosts: &[&str], dests: &[&str]) -> AllowRules {
        AllowRules {
            hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
            dests: dests.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn no_rules_admit_everything() {
        let off = AllowRules::default();
        assert!(!off.is_active());
        assert!(off.admits_name("anything.test") && off.admits("x.test", ip("10.0.0.1")));
    }

    #[test]
    fn a_name_or_an_address_admits() {
        let r = rules(&["*.example.com"], &["10.0.0.0/8"]);
        assert!(r.admits_name("www.example.com"));
        assert!(!r.admits_name("example.org"));
        assert!(
            r.admits("example.org", ip("10.1.2.3")),
            "its address is allowed"
        );
        assert!(!r.admits("example.org", ip("192.0.2.1")));
        assert!(
            r.admits("www.example.com", ip("192.0.2.1")),
            "its name is allowed"
        );
        assert!(r.admits_name("10.9.9.9") && r.admits_name("::ffff:10.0.0.1"));
        assert!(!r.admits_name("192.0.2.1"));
    }

    #[test]
    fn only_host_rules_refuse_every_other_name_and_address() {
        let r = rules(&["a.test"], &[]);
        assert!(r.is_active());
        assert!(!r.admits("b.test", ip("127.0.0.1")));
        assert!(!r.admits_name("127.0.0.1"));
        assert_eq!(
            AllowRules::refusal("b.test"),
            "access to b.test is not in the allow list (--allow-host, --allow-dest)"
        );
    }

    #[test]
    fn a_stored_list_reaches_every_clone() {
        let config = |args: &[&str]| {
            let mut command_line: Vec<std::ffi::OsString> = vec!["--no-cache".into()];
            command_line.extend(args.iter().map(Into::into));
            crate::config_file::load_config(&crate::config_file::ConfigSource {
                file: None,
                command_line,
            })
            .unwrap()
        };
        let live = Arc::new(ArcSwap::from_pointee(config(&["--allow-host", "a.test"])));
        let shared = LiveAllow::of(Arc::clone(&live));
        let clone = shared.clone();
        assert!(!clone.admits("b.test", ip("127.0.0.1")));
        live.store(Arc::new(config(&["--allow-host", "b.test"])));
        assert!(clone.admits("b.test", ip("127.0.0.1")));
        assert!(LiveAllow::default().admits("b.test", ip("127.0.0.1")));
    }
}
