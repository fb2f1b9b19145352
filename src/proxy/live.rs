//! The running configuration and its reload (SIGHUP), and the log reopen (SIGUSR1).
//!
//! Workers read the configuration as `proxy.config.load().field`: [`LiveConfig`] keeps it in an
//! [`ArcSwap`], whose `load()` takes no lock, allocates nothing and, for a short-lived guard, does not
//! touch the shared reference count (it borrows a per-thread slot). A reload builds a new
//! configuration and swaps the pointer; a reader that already holds a guard finishes with the one it
//! loaded, later loads see the new one, and no connection or tunnel is touched. The replaced
//! configuration is freed when its last guard goes. The client-side timeouts live in the worker pool
//! ([`ClientTimeouts`]), so a reload stores them there too: connections accepted and
//! requests started after it use them.
//!
//! ```text
//!  SIGHUP ─> reload thread: reload(): read file + command line ─> validate ─> keep restart-only
//!              │ error: log it, keep running config   settings ─> access log settings ─> swap
//!  SIGUSR1 ─> access_log::reopen()
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::Mutex;

use arc_swap::{ArcSwap, Guard};

use super::ProxyConfig;
use super::allow::LiveAllow;
use crate::net::ClientTimeouts;

/// Rebuilds the configuration from where it came from (the file and the command line).
pub type Reloader = Box<dyn Fn() -> Result<ProxyConfig, String> + Send + Sync>;

/// The configuration new requests use; swapped by a reload.
pub struct LiveConfig {
    /// Shared with the dial rules, which read the allow list from it ([`LiveAllow`]).
    current: Arc<ArcSwap<ProxyConfig>>,
    /// The server's copy of the client-side timeouts, which a reload updates.
    timeouts: Arc<ClientTimeouts>,
    /// Held while a reload compares and swaps, so two reloads cannot interleave.
    reloading: Mutex<()>,
    /// Reloads applied and reloads refused (the file did not parse or validate).
    pub reloads: AtomicU64,
    pub failed_reloads: AtomicU64,
}

/// How one reload went.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Applied; the restart-only settings named were changed in the file but kept.
    Applied { kept: Vec<&'static str> },
    /// Refused; the running configuration is unchanged.
    Refused(String),
}

impl LiveConfig {
    /// `timeouts` is the server's (see [`crate::net::Server::timeouts`]).
    pub fn new(config: ProxyConfig, timeouts: Arc<ClientTimeouts>) -> LiveConfig {
        LiveConfig {
            current: Arc::new(ArcSwap::from_pointee(config)),
            timeouts,
            reloading: Mutex::new(()),
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
        }
    }

    /// The configuration now, for one request or one page: a guard that keeps it alive while held.
    /// Hold it briefly (not across a tunnel or a long body); each field read may take a fresh one.
    pub fn load(&self) -> Guard<Arc<ProxyConfig>> {
        self.current.load()
    }

    /// The configuration now, as an `Arc` to keep for longer than a request.
    pub fn load_full(&self) -> Arc<ProxyConfig> {
        self.current.load_full()
    }

    /// The allow list of the configuration now and after every reload, for the dial rules.
    pub fn allow(&self) -> LiveAllow {
        LiveAllow::of(Arc::clone(&self.current))
    }

    /// Applies a freshly read configuration (or refuses the error that reading it gave), keeping the
    /// settings only a restart can change.
    pub fn reload(&self, read: Result<ProxyConfig, String>) -> ReloadOutcome {
        let outcome = match read {
            Err(why) => ReloadOutcome::Refused(why),
            Ok(mut new) => {
                let _reloading = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
                let kept = keep_restart_only(&self.current.load(), &mut new);
                match crate::access_log::configure(&new.log) {
                    Err(e) => ReloadOutcome::Refused(e.to_string()),
                    Ok(()) => {
                        self.timeouts.set_from(&new.server);
                        self.current.store(Arc::new(new));
                        ReloadOutcome::Applied { kept }
                    }
                }
            }
        };
        match &outcome {
            ReloadOutcome::Applied { kept } => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                log::info!("configuration reloaded");
                for name in kept {
                    log::warn!("--{name} changed in the configuration: it needs a restart; kept");
                }
            }
            ReloadOutcome::Refused(why) => {
                self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                log::error!("reload refused, still running the previous configuration: {why}");
            }
        }
        outcome
    }
}

/// Copies the settings a running proxy cannot change (its socket, threads, cache and tunnel thread)
/// from `running` into `new`, returning the names of those that differed.
fn keep_restart_only(running: &ProxyConfig, new: &mut ProxyConfig) -> Vec<&'static str> {
    let mut kept = Vec::new();
    fn keep<T: Clone + Debug>(
        kept: &mut Vec<&'static str>,
        name: &'static str,
        running: &T,
        new: &mut T,
    ) {
        if format!("{running:?}") != format!("{new:?}") {
            kept.push(name);
            new.clone_from(running);
        }
    }
    let (r, n) = (&running.server, &mut new.server);
    keep(&mut kept, "listen", &r.listen, &mut n.listen);
    keep(&mut kept, "workers", &r.workers, &mut n.workers);
    keep(&mut kept, "queue", &r.queue, &mut n.queue);
    keep(
        &mut kept,
        "max-connections",
        &r.max_connections,
        &mut n.max_connections,
    );
    keep(
        &mut kept,
        "max-connections-per-client",
        &r.max_connections_per_client,
        &mut n.max_connections_per_client,
    );
    keep(
        &mut kept,
        "shutdown-grace",
        &r.shutdown_grace,
        &mut n.shutdown_grace,
    );
    n.limits = r.limits;
    // The upstream pool and the background revalidation threads hold the destination rules.
    keep(
        &mut kept,
        "deny-dest",
        &running.deny_dests,
        &mut new.deny_dests,
    );
    keep(
        &mut kept,
        "cache-dir",
        &running.cache_dir,
        &mut new.cache_dir,
    );
    keep(
        &mut kept,
        "cache-size",
        &running.cache_size,
        &mut new.cache_size,
    );
    keep(
        &mut kept,
        "max-object-size",
        &running.max_object_size,
        &mut new.max_object_size,
    );
    keep(
        &mut kept,
        "memory-cache-size",
        &running.memory_cache_size,
        &mut new.memory_cache_size,
    );
    keep(
        &mut kept,
        "disk-threads",
        &running.disk_threads,
        &mut new.disk_threads,
    );
    keep(
        &mut kept,
        "tunnel-idle-timeout",
        &running.tunnel_idle_timeout,
        &mut new.tunnel_idle_timeout,
    );
    keep(&mut kept, "via", &running.via, &mut new.via);
    keep(
        &mut kept,
        "accept-proxy-protocol",
        &r.accept_proxy_protocol,
        &mut n.accept_proxy_protocol,
    );
    // Parents keep their health state in `Proxy::parents`, built from these at start-up.
    keep(
        &mut kept,
        "parent (and parent-auth, parent-fallback, direct-host)",
        &running.parents,
        &mut new.parents,
    );
    // The CA is loaded at start-up: interception can be narrowed by its host rules, not switched on
    // or moved to another CA.
    match (&running.intercept, &mut new.intercept) {
        (Some(r), Some(n)) => {
            keep(&mut kept, "ca-dir", &r.ca_dir, &mut n.ca_dir);
            keep(&mut kept, "upstream-ca", &r.upstream_ca, &mut n.upstream_ca);
        }
        (None, None) => {}
        (_, n) => {
            kept.push("intercept");
            n.clone_from(&running.intercept);
        }
    }
    kept
}

/// How long [`SignalThread::stop`] waits for a reload still running before leaving it behind.
const RELOAD_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Handles SIGHUP (reload) and SIGUSR1 (reopen the access log) until [`SignalThread::stop`].
///
/// The thread that takes the signals never runs a reload itself: it hands SIGHUP to a reload thread
/// through a channel of one (a SIGHUP while one reload waits is folded into it). So a reload that
/// blocks, on whatever it reads or opens, neither stops SIGUSR1 and later SIGHUPs from being taken
/// nor keeps shutdown waiting: `stop` gives a running reload [`RELOAD_STOP_WAIT`], then leaves it.
///
/// ```text
///  SIGHUP ──> "signal" thread ──try_send──> [1] ──> "reload" thread: read, validate, swap
///  SIGUSR1 ─┘  access_log::reopen() at once
/// ```
pub struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
    /// The reload thread and the channel that closes when it ends.
    reloads: Option<(std::thread::JoinHandle<()>, crossbeam_channel::Receiver<()>)>,
}

impl SignalThread {
    pub fn start(
        proxy: std::sync::Arc<super::Proxy>,
        reloader: Option<Reloader>,
    ) -> std::io::Result<SignalThread> {
        use signal_hook::consts::{SIGHUP, SIGUSR1};
        let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGUSR1])?;
        let handle = signals.handle();
        let (requests, reloads) = match reloader {
            Some(reload) => {
                let (requests, pending) = crossbeam_channel::bounded::<()>(1);
                let (ended, ended_rx) = crossbeam_channel::bounded::<()>(0);
                let thread =
                    std::thread::Builder::new()
                        .name("reload".into())
                        .spawn(move || {
                            let _ended = ended;
                            while pending.recv().is_ok() {
                                let outcome = proxy.config.reload(reload());
                                if let (ReloadOutcome::Applied { .. }, Some(cache)) =
                                    (outcome, &proxy.cache)
                                {
                                    cache.set_refresh_rules(proxy.config.load().refresh.clone());
                                    cache
                                        .set_digest_rules(proxy.config.load().digest_rules.clone());
                                }
                            }
                        })?;
                (Some(requests), Some((thread, ended_rx)))
            }
            None => (None, None),
        };
        let thread = std::thread::Builder::new()
            .name("signal".into())
            .spawn(move || {
                for signal in signals.forever() {
                    match (signal, &requests) {
                        (SIGUSR1, _) => {
                            log::info!("SIGUSR1: reopening the access log");
                            crate::access_log::reopen();
                        }
                        (_, Some(requests)) => {
                            log::info!("SIGHUP: reloading the configuration");
                            if requests.try_send(()).is_err() {
                                log::warn!(
                                    "SIGHUP: a reload is still running; one more will follow it"
                                );
                            }
                        }
                        (_, None) => log::warn!("SIGHUP: there is no --config file to reload"),
                    }
                }
            })?;
        Ok(SignalThread {
            handle,
            thread,
            reloads,
        })
    }

    /// Stops taking signals, then waits a bounded time for the reload thread.
    pub fn stop(self) {
        self.handle.close();
        // The signal thread holds the reload channel's sender: once it is gone, the reload thread
        // leaves its loop when the reload it may be running returns.
        let _ = self.thread.join();
        if let Some((thread, ended)) = self.reloads {
            match ended.recv_timeout(RELOAD_STOP_WAIT) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    log::warn!("a configuration reload is still running; not waiting for it")
                }
                _ => {
                    let _ = thread.join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file::{ConfigSource, load_config};

    fn config(args: &[&str]) -> ProxyConfig {
        load_config(&ConfigSource {
            file: None,
            command_line: args.iter().map(Into::into).collect(),
        })
        .unwrap()
    }

    #[test]
    fn a_replaced_configuration_is_freed_once_its_last_reader_lets_go() {
        let first = config(&["--no-cache"]);
        let live = LiveConfig::new(first.clone(), Arc::new(ClientTimeouts::new(&first.server)));
        let held = live.load_full();
        let old = Arc::downgrade(&held);
        assert_eq!(
            live.reload(Ok(first)),
            ReloadOutcome::Applied { kept: vec![] }
        );
        assert!(old.upgrade().is_some(), "a reader holding it keeps it");
        drop(held);
        assert!(
            old.upgrade().is_none(),
            "no leak: it goes with its last reader"
        );
    }

    #[test]
    fn a_reload_applies_rules_keeps_restart_only_settings_and_counts() {
        let first = config(&["--no-cache", "--workers", "2"]);
        let timeouts = Arc::new(ClientTimeouts::new(&first.server));
        let live = LiveConfig::new(first, Arc::clone(&timeouts));
        let outcome = live.reload(Ok(config(&[
            "--no-cache",
            "--workers",
            "8",
            "--listen",
            "127.0.0.1:9",
            "--deny-host",
            "a.test",
            "--origin-timeout",
            "3s",
            "--head-timeout",
            "2s",
            "--idle-timeout",
            "4s",
            "--client-timeout",
            "5s",
        ])));
        assert_eq!(
            outcome,
            ReloadOutcome::Applied {
                kept: vec!["listen", "workers"]
            }
        );
        let secs = std::time::Duration::from_secs;
        let now = live.load();
        assert_eq!(now.server.workers, 2);
        assert_eq!(now.server.listen.port(), 3128);
        assert_eq!(now.deny_hosts.len(), 1);
        assert_eq!(now.origin_timeout, secs(3));
        assert_eq!(now.server.head_timeout, secs(2));
        let applied = (timeouts.head(), timeouts.idle(), timeouts.client());
        assert_eq!(
            applied,
            (secs(2), secs(4), secs(5)),
            "the server's copy follows"
        );
        let refused = live.reload(Err("broken".into()));
        assert_eq!(refused, ReloadOutcome::Refused("broken".into()));
        assert_eq!(
            live.load().deny_hosts.len(),
            1,
            "a refused reload changes nothing"
        );
        assert_eq!(timeouts.head(), secs(2));
        assert_eq!(live.reloads.load(Ordering::Relaxed), 1);
        assert_eq!(live.failed_reloads.load(Ordering::Relaxed), 1);
    }
}
