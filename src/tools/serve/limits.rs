//! Per-client accounting: how many requests each address has made (for the center-of-the-pop page),
//! and the abuse rule that bans a client. The rule in one sentence: more than `--ban-after` requests
//! within `--ban-window` is abuse, except that a browser's page load (a burst, then a pause) is not.
//!
//! ```text
//!  request ─┬─ no valid cookie ─> the address's window: more than --ban-after within --ban-window
//!           │                     bans the address's cookieless requests (cookie holders go on)
//!           └─ valid cookie ────> the visitor's run: its requests since it last paused for
//!                                 --visitor-pause. The runs of one address's visitors, counted
//!                                 within --ban-window, may reach max(--ban-after, --visitor-burst);
//!                                 past that, the visitor with the longest run is banned (that
//!                                 cookie only), and the address gets no new cookies while it lasts
//!  minting a cookie: at most --new-visitors-per-ip per --ban-window per address
//! ```
//! Why it can be predicted: `--ban-after 0` turns every ban off; each limit only grows with
//! `--ban-after`; a lone cookie holder's run is a subset of what the window would count without the
//! cookie, against a limit at least as high, so a cookie never makes things worse. A page load then
//! a pause starts a new run, however often it is repeated. A script that never pauses keeps its run
//! going and is banned with or without a cookie. Rotating cookies buys little: the runs of one
//! address share one limit, each overflow bans the longest, and a banned visitor's address gets no
//! fresh cookie, so N cookies bought in advance yield at most about limit x (1 + ln N) requests.
//! A browser loading a page beside a hammering script keeps its cookie: its run is the shorter. Everything takes `now` as an argument, so the rule is tested without a clock.

use crate::runtime::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked before idle ones are forgotten.
const MAX_ADDRESSES: usize = 100_000;
/// Banned visitors remembered; beyond it, ended bans are forgotten first.
const MAX_VISITOR_BANS: usize = 100_000;

/// The ban rule's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConfig {
    /// Requests allowed per address within `ban_window`; the next one bans. 0 turns bans off.
    pub ban_after: u64,
    pub ban_window: Duration,
    /// How long a ban lasts; `None` until restart.
    pub ban_for: Option<Duration>,
    /// Requests one address's cookie holders may make without pausing (with `ban_after`, the
    /// larger counts).
    pub visitor_burst: u64,
    /// A gap this long between a visitor's requests ends its run.
    pub visitor_pause: Duration,
    /// New visitor cookies one address may get per `ban_window`.
    pub new_visitors_per_ip: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            ban_after: 100,
            ban_window: Duration::from_secs(60),
            ban_for: None,
            visitor_burst: 300,
            visitor_pause: Duration::from_secs(2),
            new_visitors_per_ip: 10,
        }
    }
}

impl LimitConfig {
    /// How many requests the runs of one address's visitors may hold.
    pub fn run_limit(&self) -> u64 {
        self.ban_after.max(self.visitor_burst)
    }
}

/// Why a client was banned.
#[derive(Debug, Clone, PartialEq)]
pub enum BanReason {
    /// More cookieless requests than `ban_after` within the window.
    TooManyRequests { limit: u64, window: Duration },
    /// The visitors' runs passed the limit and this one had been going longest: no pauses.
    NoPause { limit: u64, pause: Duration },
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
            BanReason::NoPause { limit, pause } => format!(
                "more than {limit} requests without a pause of {}",
                human(*pause)
            ),
        }
    }
}

/// Who a ban refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanScope {
    /// The requests without a valid cookie from one address.
    Address,
    /// The requests that carry one visitor cookie.
    Visitor,
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Ban {
    pub reason: BanReason,
    pub scope: BanScope,
    /// When it ends; `None` lasts until restart.
    pub until: Option<Instant>,
}

impl Ban {
    fn holds(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    /// Serve it; this is the address's `nth` request (counting from 1).
    Allowed { nth: u64 },
    /// Refuse it with 403. `new` is true for the request that caused the ban.
    Banned { ban: Ban, new: bool },
}

/// A visitor's requests since its last pause, from one address.
struct Run {
    started: Instant,
    last: Instant,
    /// The times of the run's requests within the window.
    times: VecDeque<Instant>,
}

#[derive(Default)]
struct Address {
    /// Requests served, all paths, for the center-of-the-pop page.
    served: u64,
    /// Times of the cookieless requests within the window.
    window: VecDeque<Instant>,
    /// Times of the cookies minted within the window.
    minted: VecDeque<Instant>,
    /// The ban of this address's cookieless requests.
    ban: Option<Ban>,
    /// Set while a visitor banned here is banned: no new cookies for this address until then.
    no_mint: Option<Ban>,
    runs: HashMap<String, Run>,
    last_seen: Option<Instant>,
}

#[derive(Default)]
struct State {
    addresses: HashMap<IpAddr, Address>,
    visitor_bans: HashMap<String, Ban>,
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

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ban(&self, reason: BanReason, scope: BanScope, now: Instant) -> Ban {
        Ban {
            reason,
            scope,
            until: self.config.ban_for.map(|d| now + d),
        }
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
        let verdict = match visitor {
            None => self.cookieless(ip, address, now),
            Some(id) => self.cookie_holder(ip, id, address, &mut state.visitor_bans, now),
        };
        if let Some(banned) = verdict {
            return banned;
        }
        address.served += 1;
        Admit::Allowed {
            nth: address.served,
        }
    }

    /// The address's window; `Some` when the request is refused.
    fn cookieless(&self, ip: IpAddr, address: &mut Address, now: Instant) -> Option<Admit> {
        let config = &self.config;
        if let Some(ban) = &address.ban {
            if ban.holds(now) {
                let ban = ban.clone();
                return Some(Admit::Banned { ban, new: false });
            }
            log::info!("the ban on {ip} has ended");
            address.ban = None;
            address.window.clear();
        }
        if config.ban_after == 0 {
            return None;
        }
        expire(&mut address.window, config.ban_window, now);
        address.window.push_back(now);
        if (address.window.len() as u64) <= config.ban_after {
            return None;
        }
        let reason = BanReason::TooManyRequests {
            limit: config.ban_after,
            window: config.ban_window,
        };
        let ban = self.ban(reason, BanScope::Address, now);
        log::warn!(
            "banning requests without a visitor cookie from {ip} {}: {}",
            ban_length(&ban, now),
            ban.reason.explain()
        );
        address.ban = Some(ban.clone());
        address.window.clear();
        Some(Admit::Banned { ban, new: true })
    }

    /// The visitors' runs; `Some` when the request is refused.
    fn cookie_holder(
        &self,
        ip: IpAddr,
        id: &str,
        address: &mut Address,
        bans: &mut HashMap<String, Ban>,
        now: Instant,
    ) -> Option<Admit> {
        let config = &self.config;
        if let Some(ban) = bans.get(id) {
            if ban.holds(now) {
                let ban = ban.clone();
                return Some(Admit::Banned { ban, new: false });
            }
            bans.remove(id);
        }
        if config.ban_after == 0 {
            return None;
        }
        // Runs whose visitor has paused are over; what is left counts only within the window.
        address.runs.retain(|_, run| {
            expire(&mut run.times, config.ban_window, now);
            now.saturating_duration_since(run.last) < config.visitor_pause && !run.times.is_empty()
        });
        let run = address.runs.entry(id.to_string()).or_insert_with(|| Run {
            started: now,
            last: now,
            times: VecDeque::new(),
        });
        run.last = now;
        run.times.push_back(now);
        let held: u64 = address.runs.values().map(|r| r.times.len() as u64).sum();
        if held <= config.run_limit() {
            return None;
        }
        // The visitor with the most requests since its last pause is the one hammering, not the
        // browser that loaded a page beside it; on a tie the one going longest, then the one asking.
        let victim = address
            .runs
            .iter()
            .max_by_key(|(other, run)| {
                (
                    run.times.len(),
                    std::cmp::Reverse(run.started),
                    other.as_str() == id,
                )
            })
            .map(|(other, _)| other.clone())?;
        address.runs.remove(&victim);
        let reason = BanReason::NoPause {
            limit: config.run_limit(),
            pause: config.visitor_pause,
        };
        let ban = self.ban(reason, BanScope::Visitor, now);
        log::warn!(
            "banning a visitor cookie used from {ip} {}: {}; {ip} gets no new cookies meanwhile",
            ban_length(&ban, now),
            ban.reason.explain()
        );
        if bans.len() >= MAX_VISITOR_BANS {
            bans.retain(|_, b| b.holds(now));
            if let Some(any) = bans
                .keys()
                .next()
                .cloned()
                .filter(|_| bans.len() >= MAX_VISITOR_BANS)
            {
                bans.remove(&any);
            }
        }
        bans.insert(victim.clone(), ban.clone());
        address.no_mint = Some(ban.clone());
        (victim == id).then_some(Admit::Banned { ban, new: true })
    }

    /// Whether `ip` may get another new visitor cookie now; counts it when it may.
    pub fn may_mint(&self, ip: IpAddr, now: Instant) -> bool {
        let mut state = self.state();
        let address = state.addresses.entry(ip).or_default();
        if let Some(strike) = &address.no_mint {
            if strike.holds(now) {
                return false;
            }
            address.no_mint = None;
        }
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

/// Forgets addresses that are not banned and were not seen within the window.
fn forget_idle_addresses(addresses: &mut HashMap<IpAddr, Address>, window: Duration, now: Instant) {
    addresses.retain(|_, a| {
        a.ban.is_some()
            || a.no_mint.is_some()
            || a.last_seen
                .is_some_and(|seen| now.saturating_duration_since(seen) < window)
    });
}

/// A ban's length for the log: `for 5m` or `until restart`.
pub fn ban_length(ban: &Ban, now: Instant) -> String {
    match ban.until {
        Some(until) => format!("for {}", human(until.saturating_duration_since(now))),
        None => "until restart".to_string(),
    }
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
#[path = "limits_tests.rs"]
mod tests;
