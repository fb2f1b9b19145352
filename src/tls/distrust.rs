//! Clients that refuse Porter's certificate: every TLS stack says only "unable to get local issuer
//! certificate" on its side, so Porter says who and what on its own. A refusal (an `unknown_ca`,
//! `bad_certificate` (GnuTLS), `certificate_unknown`, `access_denied` or `decrypt_error` alert, or
//! a close right after Porter's certificate flight with no alert, which is what Node does) is
//!
//! - counted per host for `/metrics` (`porter_tls_client_distrusts_ca_total{host}`), with at most
//!   [`MAX_HOSTS`] host labels and the rest folded into `(other)`;
//! - logged as one warning per client address and host per [`WARN_EVERY`], naming both and the fix;
//! - remembered per client address and host, so `--intercept-fallback tunnel` can tunnel that
//!   client's next CONNECTs to the host instead (Squid's `on_ssl_bump_error splice`).
//!
//! Both maps are bounded: the pairs at [`MAX_PAIRS`] (the oldest refusal goes first), the hosts at
//! [`MAX_HOSTS`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::runtime::Mutex;

/// Host labels kept apart in `/metrics`; further hosts are counted as `(other)`.
pub const MAX_HOSTS: usize = 64;
/// Client and host pairs remembered (for the warning's rate limit and the fallback).
pub const MAX_PAIRS: usize = 4096;
/// One warning per client address and host in this long.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The label that hosts beyond [`MAX_HOSTS`] are counted under.
pub const OTHER_HOSTS: &str = "(other)";

struct Pair {
    refused: Instant,
    warned: Option<Instant>,
}

#[derive(Default)]
struct State {
    pairs: HashMap<(IpAddr, String), Pair>,
    hosts: HashMap<String, u64>,
    other: u64,
}

/// Refusals of Porter's certificate, by client and host.
#[derive(Default)]
pub struct Distrust {
    state: Mutex<State>,
    /// CONNECTs tunnelled rather than intercepted because their client refused the certificate.
    pub fallback_tunnels: AtomicU64,
}

impl Distrust {
    /// Records that `client` refused Porter's certificate for `host` (`how`: the alert, or the close),
    /// counting it and warning at most once a minute for the pair. `proxy` is the address the client
    /// reached Porter on, for the `/ca.pem` and `/setup` links.
    pub fn refused(&self, client: IpAddr, host: &str, how: &str, proxy: Option<SocketAddr>) {
        let now = Instant::now();
        let warn = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let state = &mut *state;
            let room = state.hosts.len() < MAX_HOSTS;
            match state.hosts.get_mut(host) {
                Some(count) => *count += 1,
                None if room => {
                    state.hosts.insert(host.to_string(), 1);
                }
                None => state.other += 1,
            }
            let key = (client, host.to_string());
            if !state.pairs.contains_key(&key) && state.pairs.len() >= MAX_PAIRS {
                let oldest = state
                    .pairs
                    .iter()
                    .min_by_key(|(_, pair)| pair.refused)
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    state.pairs.remove(&oldest);
                }
            }
            let pair = state.pairs.entry(key).or_insert(Pair {
                refused: now,
                warned: None,
            });
            pair.refused = now;
            let warn = pair
                .warned
                .is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
            if warn {
                pair.warned = Some(now);
            }
            warn
        };
        if warn {
            let base = proxy.map_or_else(|| "http://PROXY".to_string(), own_url);
            log::warn!(
                "client {client} does not trust Porter's CA for {host} ({how}): have it trust \
                 {base}/ca.pem ({base}/setup shows how on each system and client); pinned clients: \
                 --no-intercept-host {host} or --intercept-fallback tunnel"
            );
        }
    }

    /// Whether `client` refused the certificate for `host` within `within`.
    pub fn refused_within(&self, client: IpAddr, host: &str, within: Duration) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .pairs
            .get(&(client, host.to_string()))
            .is_some_and(|pair| pair.refused.elapsed() < within)
    }

    /// The refusals by host label, sorted by host, `(other)` last when there were any.
    pub fn by_host(&self) -> Vec<(String, u64)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(String, u64)> = state
            .hosts
            .iter()
            .map(|(host, n)| (host.clone(), *n))
            .collect();
        rows.sort();
        if state.other > 0 {
            rows.push((OTHER_HOSTS.to_string(), state.other));
        }
        rows
    }

    pub fn fallback_tunnelled(&self) {
        self.fallback_tunnels.fetch_add(1, Ordering::Relaxed);
    }
}

/// `http://ADDR`, with an IPv6 address in brackets, for the `/ca.pem` and `/setup` links.
fn own_url(proxy: SocketAddr) -> String {
    format!("http://{proxy}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_beyond_the_limit_fold_into_other_and_pairs_stay_bounded() {
        let distrust = Distrust::default();
        let client: IpAddr = "10.0.0.7".parse().unwrap();
        for n in 0..MAX_HOSTS + 3 {
            distrust.refused(client, &format!("h{n:03}.test"), "unknown_ca", None);
        }
        distrust.refused(client, "h000.test", "unknown_ca", None);
        let rows = distrust.by_host();
        assert_eq!(rows.len(), MAX_HOSTS + 1);
        assert_eq!(rows[0], ("h000.test".to_string(), 2));
        assert_eq!(rows[MAX_HOSTS], (OTHER_HOSTS.to_string(), 3));
        assert!(distrust.refused_within(client, "h001.test", Duration::from_secs(600)));
        assert!(!distrust.refused_within(client, "never.test", Duration::from_secs(600)));
        for n in 0..MAX_PAIRS + 10 {
            let ip = IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]);
            distrust.refused(ip, "many.test", "unknown_ca", None);
        }
        assert!(distrust.state.lock().unwrap().pairs.len() <= MAX_PAIRS);
    }
}
