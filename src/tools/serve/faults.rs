//! The unreliable banking endpoint, `/getbalance`: each request draws one outcome from a fault mix
//! (`--faults timeout=0.2,403=0.2,500=0.1`, the rest 200) with a seeded generator, so a run can be
//! replayed exactly with `--seed`.
//!
//! ```text
//!   draw u in [0, 1)
//!   0 ─── timeout ───┬─── 403 ───┬── 500 ──┬──────────── 200 ─────────── 1
//! ```
//! This module only decides; the handler writes the page, and [`super::hold`] keeps a timed-out
//! connection open without a worker. The generator is SplitMix64 (Steele, Lea and Flood, 2014): tiny,
//! fast and well mixed, which is all a test server needs; it is not for secrets (visitor ids use the
//! operating system's generator instead).

use crate::runtime::Mutex;
use std::fmt;
use std::str::FromStr;

/// The share of `/getbalance` requests that end each way; what is left over answers 200.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultMix {
    /// Held open for `--fault-delay`, then closed without a response.
    pub timeout: f64,
    /// Answered 403 Forbidden.
    pub forbidden: f64,
    /// Answered 500 Internal Server Error.
    pub error: f64,
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            timeout: 0.2,
            forbidden: 0.2,
            error: 0.1,
        }
    }
}

impl FaultMix {
    /// No faults at all: every request answers 200.
    pub const NONE: FaultMix = FaultMix {
        timeout: 0.0,
        forbidden: 0.0,
        error: 0.0,
    };

    /// The outcome for a uniform draw `u` in `[0, 1)`.
    pub fn pick(&self, u: f64) -> Outcome {
        let mut edge = self.timeout;
        if u < edge {
            return Outcome::Timeout;
        }
        edge += self.forbidden;
        if u < edge {
            return Outcome::Forbidden;
        }
        edge += self.error;
        if u < edge {
            return Outcome::Error;
        }
        Outcome::Ok
    }
}

/// A `--faults` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpecError(String);

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultSpecError {}

impl FromStr for FaultMix {
    type Err = FaultSpecError;

    /// Parses `timeout=0.2,403=0.2,500=0.1`; a kind left out has share 0, and `none` turns faults off.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let mut mix = FaultMix::NONE;
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(mix);
        }
        let mut seen: Vec<&str> = Vec::new();
        for part in text.split(',') {
            let (kind, share) = part.split_once('=').ok_or_else(|| {
                FaultSpecError(format!(
                    "{part:?} is not KIND=SHARE (for example timeout=0.2)"
                ))
            })?;
            let kind = kind.trim();
            let share: f64 = share
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && (0.0..=1.0).contains(s))
                .ok_or_else(|| {
                    FaultSpecError(format!(
                        "the share in {part:?} must be a number from 0 to 1"
                    ))
                })?;
            let slot = match kind {
                "timeout" => &mut mix.timeout,
                "403" => &mut mix.forbidden,
                "500" => &mut mix.error,
                _ => {
                    return Err(FaultSpecError(format!(
                        "unknown fault {kind:?} (use timeout, 403 or 500; the rest is 200)"
                    )));
                }
            };
            if seen.contains(&kind) {
                return Err(FaultSpecError(format!("fault {kind:?} is given twice")));
            }
            seen.push(kind);
            *slot = share;
        }
        let sum = mix.timeout + mix.forbidden + mix.error;
        // A little slack so that 0.7+0.2+0.1 (0.9999999999999999 or 1.0000000000000002) is accepted.
        if sum > 1.0 + 1e-9 {
            return Err(FaultSpecError(format!(
                "fault shares sum to {}, more than 1 (what is left over answers 200)",
                (sum * 1e6).round() / 1e6
            )));
        }
        Ok(mix)
    }
}

impl fmt::Display for FaultMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeout={},403={},500={}",
            self.timeout, self.forbidden, self.error
        )
    }
}

/// How one `/getbalance` request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Forbidden,
    Error,
    Timeout,
}

impl Outcome {
    /// The name in the event log, matching the `--faults` keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "200",
            Outcome::Forbidden => "403",
            Outcome::Error => "500",
            Outcome::Timeout => "timeout",
        }
    }
}

/// SplitMix64: a 64-bit state stepped by a constant and scrambled on output.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)` from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// What one draw decided: the outcome, and the balance shown when it is 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub outcome: Outcome,
    /// Cents, below 100 000.00.
    pub balance_cents: u64,
}

/// The shared, seeded source of `/getbalance` outcomes. Draws are taken in request order, so a
/// sequential client sees the same sequence for the same seed.
pub struct Faults {
    mix: FaultMix,
    rng: Mutex<SplitMix64>,
}

impl Faults {
    pub fn new(mix: FaultMix, seed: u64) -> Self {
        Faults {
            mix,
            rng: Mutex::new(SplitMix64::new(seed)),
        }
    }

    pub fn draw(&self) -> Draw {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.mix.pick(rng.next_f64());
        // Drawn for every outcome, so the sequence of outcomes does not depend on which were 200.
        let balance_cents = rng.next_u64() % 10_000_000;
        Draw {
            outcome,
            balance_cents,
        }
    }
}

/// `1234567` cents as `12,345.67`.
pub fn format_money(cents: u64) -> String {
    let units = (cents / 100).to_string();
    let mut grouped = String::with_capacity(units.len() + units.len() / 3);
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}.{:02}", cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_specs() {
        assert_eq!(
            "timeout=0.2,403=0.2,500=0.1".parse::<FaultMix>(),
            Ok(FaultMix::default())
        );
        let only = "500=0.5".parse::<FaultMix>().unwrap();
        assert_eq!((only.timeout, only.forbidden, only.error), (0.0, 0.0, 0.5));
        assert_eq!("none".parse::<FaultMix>(), Ok(FaultMix::NONE));
        assert_eq!(" timeout = 1 ".parse::<FaultMix>().unwrap().timeout, 1.0);
        assert!("0.7+0.2+0.1".parse::<FaultMix>().is_err());
        assert!("timeout=0.7,403=0.2,500=0.1".parse::<FaultMix>().is_ok());
        for bad in [
            "timeout=0.6,403=0.5",
            "timeout=2",
            "timeout=-0.1",
            "timeout=NaN",
            "404=0.1",
            "timeout",
            "timeout=0.1,timeout=0.1",
        ] {
            assert!(bad.parse::<FaultMix>().is_err(), "{bad}");
        }
        let err = "timeout=0.6,403=0.5".parse::<FaultMix>().unwrap_err();
        assert!(err.to_string().contains("more than 1"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        let mix = FaultMix::default();
        assert_eq!(mix.to_string().parse::<FaultMix>(), Ok(mix));
    }

    #[test]
    fn picks_by_cumulative_share() {
        let mix = FaultMix::default();
        assert_eq!(mix.pick(0.0), Outcome::Timeout);
        assert_eq!(mix.pick(0.19), Outcome::Timeout);
        assert_eq!(mix.pick(0.2), Outcome::Forbidden);
        assert_eq!(mix.pick(0.45), Outcome::Error);
        assert_eq!(mix.pick(0.5), Outcome::Ok);
        assert_eq!(mix.pick(0.999), Outcome::Ok);
        assert_eq!(FaultMix::NONE.pick(0.0), Outcome::Ok);
    }

    #[test]
    fn generator_is_deterministic_and_spread() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let again: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(first, again);
        assert_ne!(SplitMix64::new(43).next_u64(), first[0]);
        // The reference value for seed 0 (first output of SplitMix64).
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut rng = SplitMix64::new(7);
        let mut counts = [0usize; 4];
        for _ in 0..10_000 {
            let u = rng.next_f64();
            assert!((0.0..1.0).contains(&u));
            counts[(u * 4.0) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (2_200..2_800).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn same_seed_same_outcomes() {
        let mix = FaultMix::default();
        let a: Vec<Draw> = {
            let f = Faults::new(mix, 9);
            (0..50).map(|_| f.draw()).collect()
        };
        let b: Vec<Draw> = {
            let f = Faults::new(mix, 9);
            (0..50).map(|_| f.draw()).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn formats_money() {
        assert_eq!(format_money(0), "0.00");
        assert_eq!(format_money(105), "1.05");
        assert_eq!(format_money(123_456_789), "1,234,567.89");
        assert_eq!(format_money(99_999), "999.99");
    }
}
