//! Per-client accounting: how many requests each address has made (for the center-of-the-pop page),
//! and the abuse rule that bans an address.
//!
//! The rule tells people from scripts by what a browser does that a bare script does not: it keeps the
//! visitor cookie. Requests are charged to one of two meters:
//!
//! ```text
//!  request ─┬─ valid visitor cookie ─> that visitor's token bucket (--visitor-burst, refilled at
//!           │                          --visitor-rate per second); an empty bucket bans the address
//!           └─ no valid cookie ──────> the address's sliding window: more than --ban-after requests
//!                                      within --ban-window bans the address
//!  minting a cookie: at most --new-visitors-per-ip per --ban-window per address
//! ```
//! A browser loading a page and its images in bursts spends tokens that refill between pages; a
//! script hammering without a cookie meets the window, and one that keeps its cookie but never pauses
//! empties its bucket within a burst. Dropping cookies does not help: cookieless requests count in the
//! window, and the mint cap bounds how many buckets one address can collect. Everything here takes
//! `now` as an argument, so the rule is tested without a clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before idle ones are forgotten.
const MAX_ADDRESSES: usize = 100_000;
/// Visitor buckets tracked before full (idle) ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// The ban rule's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConfig {
    /// Cookieless requests allowed per address within `ban_window`; the next one bans. 0 turns bans off.
    pub ban_after: u64,
    pub ban_window: Duration,
    /// How long a ban lasts; `None` until restart.
    pub ban_for: Option<Duration>,
    /// Requests a visitor with a cookie may make in one burst.
    pub visitor_burst: u32,
    /// Tokens per second a visitor's bucket regains.
    pub visitor_rate: f64,
    /// New visitor cookies one address may get per `ban_window`.
    pub new_visitors_per_ip: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            ban_after: 100,
            ban_window: Duration::from_secs(60),
            ban_for: None,
            visitor_burst: 60,
            visitor_rate: 3.0,
            new_visitors_per_ip: 10,
        }
    }
}

/// Why an address was banned.
#[derive(Debug, Clone, PartialEq)]
pub enum BanReason {
    /// More cookieless requests than `ban_after` within the window.
    TooManyRequests { limit: u64, window: Duration },
    /// A visitor's bucket ran dry: requests without pause even with a cookie.
    NoPause { burst: u32, rate: f64 },
}

impl BanReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            BanReason::TooManyRequests { .. } => "too-many-requests",
            BanReason::NoPause { .. } => "no-pause",
        }
    }

    /// A sentence for the ban page and the log.
    pub fn explain(&self) -> String {
        match self {
            BanReason::TooManyRequests { limit, window } => format!(
                "more than {limit} requests within {} without a visitor cookie",
                human(*window)
            ),
            BanReason::NoPause { burst, rate } => format!(
                "more than {burst} requests in a burst, beyond the sustained rate of {rate} per second"
            ),
        }
    }
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Ban {
    pub reason: BanReason,
    /// When it ends; `None` lasts until restart.
    pub until: Option<Instant>,
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    /// Serve it; this is the address's `nth` request (counting from 1).
    Allowed { nth: u64 },
    /// Refuse it with 403. `new` is true for the request that caused the ban.
    Banned { ban: Ban, new: bool },
}

#[derive(Default)]
struct Address {
    /// Requests served, all paths, for the center-of-the-pop page.
    served: u64,
    /// Times of the cookieless requests within the window.
    window: VecDeque<Instant>,
    /// Times of the cookies minted within the window.
    minted: VecDeque<Instant>,
    ban: Option<Ban>,
    last_seen: Option<Instant>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Default)]
struct State {
    addresses: HashMap<IpAddr, Address>,
    buckets: HashMap<String, Bucket>,
}

/// The shared counters and bans.
pub struct Limits {
    config: LimitConfig,
    state: Mutex<State>,
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Limits {
            config,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides one request from `ip`, carrying the cookie of a known `visitor` or none.
    pub fn admit(&self, ip: IpAddr, visitor: Option<&str>, now: Instant) -> Admit {
        let config = &self.config;
        let mut guard = self.state();
        let state = &mut *guard;
        if state.addresses.len() >= MAX_ADDRESSES && !state.addresses.contains_key(&ip) {
            forget_idle_addresses(&mut state.addresses, config.ban_window, now);
        }
        let address = state.addresses.entry(ip).or_default();
        address.last_seen = Some(now);
        if let Some(ban) = &address.ban {
            if ban.until.is_none_or(|until| now < until) {
                return Admit::Banned {
                    ban: ban.clone(),
                    new: false,
                };
            }
            log::info!("ban on {ip} has ended");
            address.ban = None;
            address.window.clear();
        }
        if config.ban_after > 0 {
            let tripped = match visitor {
                Some(id) => {
                    if state.buckets.len() >= MAX_BUCKETS && !state.buckets.contains_key(id) {
                        forget_full_buckets(&mut state.buckets, config, now);
                    }
                    let bucket = state.buckets.entry(id.to_string()).or_insert(Bucket {
                        tokens: f64::from(config.visitor_burst),
                        updated: now,
                    });
                    refill(bucket, config, now);
                    if bucket.tokens >= 1.0 {
                        bucket.tokens -= 1.0;
                        None
                    } else {
                        Some(BanReason::NoPause {
                            burst: config.visitor_burst,
                            rate: config.visitor_rate,
                        })
                    }
                }
                None => {
                    expire(&mut address.window, config.ban_window, now);
                    address.window.push_back(now);
                    (address.window.len() as u64 > config.ban_after).then_some(
                        BanReason::TooManyRequests {
                            limit: config.ban_after,
                            window: config.ban_window,
                        },
                    )
                }
            };
            if let Some(reason) = tripped {
                let ban = Ban {
                    reason,
                    until: config.ban_for.map(|d| now + d),
                };
                address.ban = Some(ban.clone());
                address.window.clear();
                return Admit::Banned { ban, new: true };
            }
        }
        address.served += 1;
        Admit::Allowed {
            nth: address.served,
        }
    }

    /// Whether `ip` may get another new visitor cookie now; counts it when it may.
    pub fn may_mint(&self, ip: IpAddr, now: Instant) -> bool {
        let mut state = self.state();
        let address = state.addresses.entry(ip).or_default();
        expire(&mut address.minted, self.config.ban_window, now);
        if address.minted.len() as u64 >= u64::from(self.config.new_visitors_per_ip) {
            return false;
        }
        address.minted.push_back(now);
        true
    }
}

/// Drops the times that have left the window.
fn expire(times: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

fn refill(bucket: &mut Bucket, config: &LimitConfig, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    bucket.tokens =
        (bucket.tokens + elapsed * config.visitor_rate).min(f64::from(config.visitor_burst));
    bucket.updated = now;
}

/// Forgets addresses that are not banned and were not seen within the window.
fn forget_idle_addresses(addresses: &mut HashMap<IpAddr, Address>, window: Duration, now: Instant) {
    addresses.retain(|_, a| {
        a.ban.is_some()
            || a.last_seen
                .is_some_and(|seen| now.saturating_duration_since(seen) < window)
    });
}

/// Forgets buckets that have refilled: a new bucket would start full anyway.
fn forget_full_buckets(buckets: &mut HashMap<String, Bucket>, config: &LimitConfig, now: Instant) {
    buckets.retain(|_, b| {
        refill(b, config, now);
        b.tokens < f64::from(config.visitor_burst)
    });
}

/// `60s`, `1500ms`, `2m` for messages.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn limits(ban_after: u64, burst: u32, rate: f64) -> Limits {
        Limits::new(LimitConfig {
            ban_after,
            ban_window: Duration::from_secs(60),
            ban_for: None,
            visitor_burst: burst,
            visitor_rate: rate,
            new_visitors_per_ip: 3,
        })
    }

    fn allowed(a: &Admit) -> bool {
        matches!(a, Admit::Allowed { .. })
    }

    #[test]
    fn script_without_cookie_is_banned_after_the_limit() {
        let l = limits(100, 60, 3.0);
        let t = Instant::now();
        for i in 0..100 {
            let a = l.admit(IP, None, t + Duration::from_millis(i));
            assert_eq!(a, Admit::Allowed { nth: i + 1 });
        }
        let a = l.admit(IP, None, t + Duration::from_millis(100));
        assert!(matches!(a, Admit::Banned { new: true, .. }), "{a:?}");
        let a = l.admit(IP, None, t + Duration::from_secs(3600));
        assert!(
            matches!(a, Admit::Banned { new: false, .. }),
            "until restart"
        );
        assert!(
            allowed(&l.admit(OTHER, None, t)),
            "other addresses unaffected"
        );
    }

    #[test]
    fn window_slides() {
        let l = limits(10, 60, 3.0);
        let t = Instant::now();
        // 10 requests every 61 s, for ten minutes: never more than 10 within any 60 s.
        for round in 0..10u64 {
            for i in 0..10u64 {
                let now = t + Duration::from_secs(61 * round) + Duration::from_millis(i);
                assert!(allowed(&l.admit(IP, None, now)));
            }
        }
    }

    #[test]
    fn browser_bursts_with_cookie_are_never_banned() {
        let l = limits(100, 60, 3.0);
        let t = Instant::now();
        // A page and 40 images, every 15 s, for an hour: 164 requests a minute, all with the cookie.
        for page in 0..240u64 {
            for i in 0..41u64 {
                let now = t + Duration::from_secs(15 * page) + Duration::from_millis(5 * i);
                let a = l.admit(IP, Some("visitor"), now);
                assert!(allowed(&a), "page {page} request {i}: {a:?}");
            }
        }
    }

    #[test]
    fn hammering_with_a_cookie_empties_the_bucket() {
        let l = limits(100, 60, 3.0);
        let t = Instant::now();
        let results: Vec<Admit> = (0..200)
            .map(|i| l.admit(IP, Some("bot"), t + Duration::from_millis(i)))
            .collect();
        let served = results.iter().take_while(|a| allowed(a)).count();
        assert!((60..=61).contains(&served), "{served}");
        assert!(matches!(
            &results[served],
            Admit::Banned {
                ban: Ban {
                    reason: BanReason::NoPause { .. },
                    ..
                },
                new: true
            }
        ));
    }

    #[test]
    fn bans_end_after_ban_for() {
        let mut config = LimitConfig {
            ban_after: 2,
            ..LimitConfig::default()
        };
        config.ban_for = Some(Duration::from_secs(30));
        let l = Limits::new(config);
        let t = Instant::now();
        assert!(allowed(&l.admit(IP, None, t)));
        assert!(allowed(&l.admit(IP, None, t)));
        assert!(!allowed(&l.admit(IP, None, t)));
        assert!(!allowed(&l.admit(IP, None, t + Duration::from_secs(29))));
        assert!(allowed(&l.admit(IP, None, t + Duration::from_secs(30))));
    }

    #[test]
    fn zero_turns_bans_off_and_counts_go_on() {
        let l = limits(0, 1, 0.0);
        let t = Instant::now();
        for i in 1..=500 {
            assert_eq!(l.admit(IP, Some("v"), t), Admit::Allowed { nth: i });
        }
    }

    #[test]
    fn minting_is_capped_per_address_and_window() {
        let l = limits(100, 60, 3.0);
        let t = Instant::now();
        assert!(l.may_mint(IP, t));
        assert!(l.may_mint(IP, t));
        assert!(l.may_mint(IP, t));
        assert!(!l.may_mint(IP, t));
        assert!(l.may_mint(OTHER, t));
        assert!(l.may_mint(IP, t + Duration::from_secs(60)));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(60)), "1m");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
    }
}
