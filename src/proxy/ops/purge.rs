//! Who may PURGE over the network (`--purge-allow CIDR`, `--purge-user USER`).
//!
//! PURGE throws a stored response away for everyone: the next client waits for the refetch (as
//! slowly as the first reader reads it), and what stale-if-error would have served when the origin
//! fails is gone. So, as in Squid (`http_access deny PURGE` unless a `purge` ACL matches), it is
//! refused unless the configuration names who may send it:
//!
//! ```text
//!  PURGE ─ client address in --purge-allow? ─ no ──> 403 (names --purge-allow)
//!            │ yes
//!            └─ --purge-user given? ─ no ──────────> allowed
//!                  │ yes
//!                  └─ authenticated as one of them? ─ no ─> 403 (names --purge-user)
//!                                                     yes ─> allowed
//! ```
//!
//! Both conditions hold when both are configured. `--purge-user` needs proxy authentication
//! (`--auth-user`/`--auth-file`), checked at start-up; inside an intercepted tunnel the user is the
//! one the CONNECT authenticated as. The address is the client's as ACLs see it (the one a trusted
//! PROXY protocol header names). `porter cache purge URL` does not come this way: it reaches the
//! proxy through the cache folder's control socket (`cache::control`).

use std::net::IpAddr;

use crate::net::acl::Cidr;

/// The PURGE rules of one configuration; the default refuses every PURGE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeRules {
    /// Client networks whose PURGE requests are obeyed; empty refuses all.
    pub allow: Vec<Cidr>,
    /// When not empty, the authenticated users (from those networks) who may purge.
    pub users: Vec<String>,
}

/// What the rules say about one PURGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeVerdict {
    Allowed,
    /// The client address is in no `--purge-allow` network (or none is configured).
    AddressNotAllowed,
    /// The address is allowed but the request is not authenticated as a `--purge-user`.
    UserNotAllowed,
}

impl PurgeVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            PurgeVerdict::Allowed => "allowed",
            PurgeVerdict::AddressNotAllowed => "address not in --purge-allow",
            PurgeVerdict::UserNotAllowed => "user not in --purge-user",
        }
    }
}

impl PurgeRules {
    /// Judges a PURGE from `ip`, authenticated as `user` (`None` without authentication).
    pub fn judge(&self, ip: IpAddr, user: Option<&str>) -> PurgeVerdict {
        if !self.allow.iter().any(|c| c.contains(ip)) {
            return PurgeVerdict::AddressNotAllowed;
        }
        if self.users.is_empty() || user.is_some_and(|u| self.users.iter().any(|n| n == u)) {
            PurgeVerdict::Allowed
        } else {
            PurgeVerdict::UserNotAllowed
        }
    }

    /// The message of the 403 page for a refused PURGE: what was refused and which flag allows it.
    pub fn refusal_message(verdict: PurgeVerdict, ip: IpAddr) -> String {
        match verdict {
            PurgeVerdict::UserNotAllowed => "PURGE is allowed only for the users named by \
                 --purge-user USER (and from --purge-allow networks)"
                .to_string(),
            _ => format!(
                "PURGE is not allowed from {ip}: the proxy obeys it only from the networks \
                 named by --purge-allow CIDR (and, with --purge-user USER, only for those users)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn by_default_every_purge_is_refused() {
        let rules = PurgeRules::default();
        assert_eq!(
            rules.judge(ip("127.0.0.1"), Some("alice")),
            PurgeVerdict::AddressNotAllowed
        );
    }

    #[test]
    fn an_allowed_network_purges_and_others_do_not() {
        let rules = PurgeRules {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            users: vec![],
        };
        assert_eq!(rules.judge(ip("10.1.2.3"), None), PurgeVerdict::Allowed);
        assert_eq!(
            rules.judge(ip("::ffff:10.1.2.3"), None),
            PurgeVerdict::Allowed
        );
        assert_eq!(
            rules.judge(ip("192.168.1.1"), Some("alice")),
            PurgeVerdict::AddressNotAllowed
        );
    }

    #[test]
    fn with_users_both_the_address_and_the_user_must_match() {
        let rules = PurgeRules {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            users: vec!["alice".into()],
        };
        assert_eq!(
            rules.judge(ip("10.1.2.3"), Some("alice")),
            PurgeVerdict::Allowed
        );
        assert_eq!(
            rules.judge(ip("10.1.2.3"), Some("bob")),
            PurgeVerdict::UserNotAllowed
        );
        assert_eq!(
            rules.judge(ip("10.1.2.3"), None),
            PurgeVerdict::UserNotAllowed
        );
        assert_eq!(
            rules.judge(ip("192.168.1.1"), Some("alice")),
            PurgeVerdict::AddressNotAllowed
        );
    }
}
