//! The client-side timeouts the acceptor and the workers read for each connection and
//! request, kept apart from [`super::ServerConfig`] so a configuration reload can change them while
//! the server runs.
//!
//! Each is an atomic count of milliseconds: a read is one relaxed load, with no lock on the path of
//! every request. The three need not change together (a connection that reads the head timeout just
//! before a reload and the idle timeout just after it gets one old and one new value, which is as
//! good as either).
//!
//! Who reads which, and when (so what a reload reaches):
//!
//! ```text
//!  client   acceptor, as it admits a socket   -> connections accepted after the reload
//!  head     worker, when a head starts        -> requests started after it
//!  idle     worker, as a connection goes idle -> connections that go idle after it
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::ServerConfig;

/// `--head-timeout`, `--idle-timeout` and `--client-timeout`, shared by a server's threads.
#[derive(Debug, Default)]
pub struct ClientTimeouts {
    head_ms: AtomicU64,
    idle_ms: AtomicU64,
    client_ms: AtomicU64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ClientTimeouts {
    pub fn new(config: &ServerConfig) -> ClientTimeouts {
        let timeouts = ClientTimeouts::default();
        timeouts.set_from(config);
        timeouts
    }

    /// Takes the three timeouts of `config`; the rest of it is left alone.
    pub fn set_from(&self, config: &ServerConfig) {
        self.head_ms
            .store(millis(config.head_timeout), Ordering::Relaxed);
        self.idle_ms
            .store(millis(config.idle_timeout), Ordering::Relaxed);
        // A zero socket timeout would mean "none" to setsockopt, and the standard library refuses it.
        self.client_ms
            .store(millis(config.client_timeout).max(1), Ordering::Relaxed);
    }

    /// How long a started request head may take to arrive whole.
    pub fn head(&self) -> Duration {
        Duration::from_millis(self.head_ms.load(Ordering::Relaxed))
    }

    /// How long an idle keep-alive connection may stay silent.
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms.load(Ordering::Relaxed))
    }

    /// The read and write timeout of a blocking client socket.
    pub fn client(&self) -> Duration {
        Duration::from_millis(self.client_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_config(head: u64, idle: u64, client: u64) -> ServerConfig {
        ServerConfig {
            name: "test",
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            queue: 1,
            max_connections: 1,
            max_connections_per_client: 1,
            allow: Vec::new(),
            limits: crate::http::Limits::default(),
            head_timeout: Duration::from_millis(head),
            idle_timeout: Duration::from_millis(idle),
            client_timeout: Duration::from_millis(client),
            shutdown_grace: Duration::ZERO,
            accept_proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
        }
    }

    #[test]
    fn set_from_replaces_all_three_and_a_zero_client_timeout_stays_usable() {
        let timeouts = ClientTimeouts::new(&server_config(10_000, 60_000, 30_000));
        assert_eq!(timeouts.head(), Duration::from_secs(10));
        assert_eq!(timeouts.idle(), Duration::from_secs(60));
        assert_eq!(timeouts.client(), Duration::from_secs(30));
        timeouts.set_from(&server_config(1_500, 2_000, 0));
        assert_eq!(timeouts.head(), Duration::from_millis(1_500));
        assert_eq!(timeouts.idle(), Duration::from_secs(2));
        assert_eq!(timeouts.client(), Duration::from_millis(1));
    }
}
