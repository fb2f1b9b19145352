//! The destination rules checked against the address a connection is actually made to, after DNS
//! resolution: `--deny-dest CIDR`, never this proxy's own listening address, and, when an allow list
//! is configured, only addresses it admits (`--allow-dest CIDR`, or a name `--allow-host` admits).
//!
//! `--deny-host` compares names, and a name is whatever DNS says it is (`internal.example` may point at
//! 10.0.0.1, a public name at 127.0.0.1); these rules see the resolved address, so no spelling and no
//! DNS record gets past them. Each resolved address is checked before the connect, so a refused
//! internal host never even sees a SYN. Requests and CONNECT tunnels share this check (in
//! `OriginPool::connect_stream`).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use super::allow::{AllowRules, LiveAllow};
use crate::net::acl::{Cidr, effective_ip};

/// What every outgoing connection is checked against.
#[derive(Debug, Clone)]
pub struct DestRules {
    /// `--deny-dest` networks.
    pub deny: Vec<Cidr>,
    /// The proxy's own listening address: a connection there would tunnel or forward to itself.
    pub listen: SocketAddr,
    /// `--allow-host` and `--allow-dest`, read from the live configuration.
    pub allow: LiveAllow,
}

/// Why a resolved address may not be connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestDenied {
    /// A `--deny-dest` rule covers the address.
    Rule { addr: SocketAddr, rule: Cidr },
    /// The address is one the proxy itself listens on.
    SelfAddress(SocketAddr),
    /// An allow list is configured and admits neither the name nor the address.
    NotAllowed { host: String, addr: SocketAddr },
}

impl fmt::Display for DestDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestDenied::Rule { addr, rule } => write!(
                f,
                "access to {} is denied by the rule --deny-dest {rule}",
                addr.ip()
            ),
            DestDenied::SelfAddress(addr) => write!(
                f,
                "{addr} is this proxy's own address: it does not connect to itself"
            ),
            DestDenied::NotAllowed { host, addr } => {
                let what = format!("{host} ({})", addr.ip());
                f.write_str(&AllowRules::refusal(&what))
            }
        }
    }
}

impl std::error::Error for DestDenied {}

impl DestRules {
    /// Checks one resolved address.
    pub fn check(&self, addr: SocketAddr) -> Result<(), DestDenied> {
        if let Some(rule) = self.deny.iter().find(|c| c.contains(addr.ip())) {
            return Err(DestDenied::Rule { addr, rule: *rule });
        }
        if self.is_own(addr) {
            return Err(DestDenied::SelfAddress(addr));
        }
        Ok(())
    }

    /// Checks one address `host` resolved to: [`DestRules::check`], then the allow list.
    pub fn check_for(&self, host: &str, addr: SocketAddr) -> Result<(), DestDenied> {
        self.check(addr)?;
        if !self.allow.admits(host, addr.ip()) {
            let host = host.to_string();
            return Err(DestDenied::NotAllowed { host, addr });
        }
        Ok(())
    }

    /// The rules for dialling a parent proxy: the same, without the allow list, which judged the
    /// request's own destination already (a parent is a means, not a destination).
    pub fn for_parent(&self) -> DestRules {
        DestRules {
            deny: self.deny.clone(),
            listen: self.listen,
            allow: LiveAllow::default(),
        }
    }

    /// Whether `addr` reaches the proxy's listener, in any spelling (mapped, unspecified), and for a
    /// proxy listening on every address, on any of this machine's addresses.
    fn is_own(&self, addr: SocketAddr) -> bool {
        if addr.port() != self.listen.port() {
            return false;
        }
        let target = effective_ip(addr.ip());
        let listen = self.listen.ip();
        if !listen.is_unspecified() {
            return target == effective_ip(listen);
        }
        // 0.0.0.0 (or ::, which also takes IPv4 on Linux) listens on every local address: loopback,
        // and whatever this machine can bind to.
        let family_matches = listen.is_ipv6() || target.is_ipv4();
        family_matches && (target.is_loopback() || is_local_address(target))
    }
}

/// Whether `ip` is one of this machine's addresses: only those can be bound to.
fn is_local_address(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Wraps a refusal in the `io::Error` a connect returns; [`denied`] takes it out again.
pub fn into_io(denied: DestDenied) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, denied)
}

/// The refusal inside a connect error, if that is what it was.
pub fn denied(error: &io::Error) -> Option<&DestDenied> {
    error.get_ref()?.downcast_ref::<DestDenied>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(listen: &str, deny: &[&str]) -> DestRules {
        DestRules {
            deny: deny.iter().map(|c| c.parse().unwrap()).collect(),
            listen: listen.parse().unwrap(),
            allow: LiveAllow::default(),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn deny_dest_rules_see_the_resolved_address() {
        let r = rules("127.0.0.1:3128", &["127.0.0.2/32", "10.0.0.0/8"]);
        assert!(r.check(addr("127.0.0.1:80")).is_ok());
        assert_eq!(
            r.check(addr("127.0.0.2:80")),
            Err(DestDenied::Rule {
                addr: addr("127.0.0.2:80"),
                rule: "127.0.0.2/32".parse().unwrap()
            })
        );
        assert!(r.check(addr("[::ffff:10.9.8.7]:443")).is_err());
        let all_loopback = rules("127.0.0.1:3128", &["127.0.0.0/8"]);
        assert!(
            all_loopback.check(addr("0.0.0.0:80")).is_err(),
            "0.0.0.0 is loopback"
        );
    }

    #[test]
    fn own_listening_address_in_any_spelling() {
        let r = rules("127.0.0.1:3128", &[]);
        for own in ["127.0.0.1:3128", "0.0.0.0:3128", "[::ffff:127.0.0.1]:3128"] {
            assert_eq!(
                r.check(addr(own)),
                Err(DestDenied::SelfAddress(addr(own))),
                "{own}"
            );
        }
        assert!(r.check(addr("127.0.0.2:3128")).is_ok(), "another address");
        assert!(r.check(addr("127.0.0.1:3129")).is_ok(), "another port");
        let any = rules("0.0.0.0:3128", &[]);
        assert!(any.check(addr("127.0.0.7:3128")).is_err());
        assert!(
            any.check(addr("192.0.2.1:3128")).is_ok(),
            "not this machine"
        );
        assert!(
            any.check(addr("[::1]:3128")).is_ok(),
            "0.0.0.0 does not take IPv6"
        );
    }

    #[test]
    fn allow_dest_rules_see_the_resolved_address_and_spare_parents() {
        let mut r = rules("127.0.0.1:3128", &["10.0.0.0/8"]);
        let config = crate::config_file::load_config(&crate::config_file::ConfigSource {
            file: None,
            command_line: ["--no-cache", "--allow-host", "a.test"]
                .into_iter()
                .chain(["--allow-dest", "127.0.0.2/32", "--allow-dest", "10.0.0.0/8"])
                .map(Into::into)
                .collect(),
        })
        .unwrap();
        r.allow = LiveAllow::of(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config)));
        assert!(r.check_for("b.test", addr("127.0.0.2:80")).is_ok());
        assert!(r.check_for("a.test", addr("127.0.0.1:80")).is_ok());
        let refused = r.check_for("b.test", addr("127.0.0.1:80"));
        assert_eq!(
            refused.unwrap_err().to_string(),
            "access to b.test (127.0.0.1) is not in the allow list (--allow-host, --allow-dest)"
        );
        assert!(
            matches!(
                r.check_for("a.test", addr("10.0.0.1:80")),
                Err(DestDenied::Rule { .. })
            ),
            "deny rules win"
        );
        assert!(
            r.for_parent()
                .check_for("parent.test", addr("127.0.0.1:80"))
                .is_ok()
        );
    }
}
