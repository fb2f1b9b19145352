//! What the cache did with a request, as the values of the `Cache-Status` field (RFC 9211) and the
//! older `X-Cache`, and why a response was not stored. Enums rather than strings so the proxy names
//! an outcome and this file alone spells it.

use std::fmt;

use super::policy::NoStore;

/// Why a response that went to the origin is not stored: the `detail` of its Cache-Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// The policy (RFC 9111 §3) does not allow it, or the request was not one we store (HEAD).
    Policy(NoStore),
    /// The body ends when the origin closes: a cut-off body could not be told from a whole one.
    CloseDelimited,
    /// Content-Length above `--max-object-size`.
    TooLarge,
    /// The store could not take it (disk full, permissions, a Vary marker that would not write).
    StoreFailed,
}

impl NotStored {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotStored::Policy(reason) => reason.as_str(),
            NotStored::CloseDelimited => "close-delimited",
            NotStored::TooLarge => "too-large",
            NotStored::StoreFailed => "store-failed",
        }
    }
}

impl fmt::Display for NotStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the cache forwarded a request: the `fwd` parameter (RFC 9211 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Nothing usable was stored.
    Miss,
    /// A stored response was stale and the origin sent a new one.
    Stale,
}

impl Forward {
    pub fn as_str(self) -> &'static str {
        match self {
            Forward::Miss => "miss",
            Forward::Stale => "stale",
        }
    }
}

/// The Cache-Status of one response (RFC 9211), with Porter as the cache's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from storage without asking the origin: `porter; hit`.
    Hit,
    /// A stale entry the origin confirmed with 304, then served: `porter; fwd=stale; fwd-status=304`.
    Revalidated,
    /// A stale entry served at once while it is revalidated in the background (RFC 5861 §3):
    /// `porter; hit; detail=stale-while-revalidate`.
    StaleWhileRevalidate,
    /// A stale entry served because the origin failed (RFC 5861 §4):
    /// `porter; hit; detail=stale-if-error`.
    StaleIfError,
    /// Read while another request fetched and stored it (read-while-writing):
    /// `porter; fwd=miss; collapsed` (RFC 9211 §2.5).
    Collapsed,
    /// A hit fresh only by a `--refresh` rule, or served although the client asked to reload
    /// (`ignore-reload`): `porter; hit; detail=refresh-rule`, `detail=rule:cargo`,
    /// `detail=ignore-reload:npm`.
    RuleHit { detail: &'static str },
    /// The origin's response, stored fresh by a `--refresh` rule:
    /// `porter; fwd=miss; stored; detail=refresh-rule` (or the rule's name, `detail=rule:cargo`).
    RuleStored { fwd: Forward, detail: &'static str },
    /// The origin's response, relayed: `porter; fwd=miss; stored` when it is being stored, or
    /// `porter; fwd=miss; detail=too-large` saying why not.
    Forwarded {
        fwd: Forward,
        stored: Result<(), NotStored>,
    },
}

impl CacheStatus {
    /// The fixed values, which need no formatting; `None` for a forwarded response.
    pub fn as_static(&self) -> Option<&'static str> {
        match self {
            CacheStatus::Hit => Some("porter; hit"),
            CacheStatus::Revalidated => Some("porter; fwd=stale; fwd-status=304"),
            CacheStatus::Collapsed => Some("porter; fwd=miss; collapsed"),
            CacheStatus::StaleWhileRevalidate => Some("porter; hit; detail=stale-while-revalidate"),
            CacheStatus::StaleIfError => Some("porter; hit; detail=stale-if-error"),
            CacheStatus::RuleHit { .. }
            | CacheStatus::Forwarded { .. }
            | CacheStatus::RuleStored { .. } => None,
        }
    }

    /// The matching `X-Cache` value: served from storage or not.
    pub fn x_cache(&self) -> &'static str {
        match self {
            CacheStatus::Hit
            | CacheStatus::Revalidated
            | CacheStatus::RuleHit { .. }
            | CacheStatus::StaleWhileRevalidate
            | CacheStatus::StaleIfError => "HIT",
            CacheStatus::Collapsed
            | CacheStatus::Forwarded { .. }
            | CacheStatus::RuleStored { .. } => "MISS",
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheStatus::Forwarded { fwd, stored } => {
                write!(f, "porter; fwd={}", fwd.as_str())?;
                match stored {
                    Ok(()) => f.write_str("; stored"),
                    Err(reason) => write!(f, "; detail={reason}"),
                }
            }
            CacheStatus::RuleStored { fwd, detail } => {
                write!(f, "porter; fwd={}; stored; detail={detail}", fwd.as_str())
            }
            CacheStatus::RuleHit { detail } => write!(f, "porter; hit; detail={detail}"),
            fixed => f.write_str(fixed.as_static().unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rfc_9211_fields() {
        assert_eq!(CacheStatus::Hit.to_string(), "porter; hit");
        assert_eq!(
            CacheStatus::Revalidated.to_string(),
            "porter; fwd=stale; fwd-status=304"
        );
        let stored = CacheStatus::Forwarded {
            fwd: Forward::Miss,
            stored: Ok(()),
        };
        assert_eq!(stored.to_string(), "porter; fwd=miss; stored");
        let refused = CacheStatus::Forwarded {
            fwd: Forward::Stale,
            stored: Err(NotStored::Policy(NoStore::Private)),
        };
        assert_eq!(refused.to_string(), "porter; fwd=stale; detail=private");
        assert_eq!(
            (stored.x_cache(), CacheStatus::Hit.x_cache()),
            ("MISS", "HIT")
        );
        let by_rule = CacheStatus::RuleStored {
            fwd: Forward::Miss,
            detail: "refresh-rule",
        };
        assert_eq!(
            by_rule.to_string(),
            "porter; fwd=miss; stored; detail=refresh-rule"
        );
        let hit = CacheStatus::RuleHit {
            detail: "ignore-reload:npm",
        };
        assert_eq!(hit.to_string(), "porter; hit; detail=ignore-reload:npm");
        assert_eq!(hit.x_cache(), "HIT");
    }
}
