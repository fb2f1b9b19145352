//! Name resolution that does not hold a worker: getaddrinfo(3) blocks (a slow or silent DNS server
//! takes seconds), so a task hands the lookup to a small pool of resolver threads and waits in
//! [`State::Resolve`] until one answers. IP literals never leave the task; threads that are not
//! workers (background revalidation) resolve directly.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::runtime::Mutex;
use crate::runtime::reactor::{self, State, TaskWaker};

/// Lookups that may run at once; more wait in the queue, up to its bound.
const RESOLVER_THREADS: usize = 4;
const QUEUED_LOOKUPS: usize = 1024;

/// One lookup: the name, and where its answer goes.
struct Lookup {
    host: String,
    port: u16,
    answer: Arc<Mutex<Option<io::Result<Vec<SocketAddr>>>>>,
    waker: TaskWaker,
}

/// The addresses `host:port` stands for, waiting at most `timeout` for a lookup.
pub fn resolve(host: &str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let Some(waker) = reactor::current_task() else {
        return Ok((host, port).to_socket_addrs()?.collect());
    };
    let answer = Arc::new(Mutex::new(None));
    let lookup = Lookup {
        host: host.to_string(),
        port,
        answer: Arc::clone(&answer),
        waker,
    };
    if resolvers().try_send(lookup).is_err() {
        // A silent DNS server has every resolver waiting and the queue full: fail this one.
        return Err(io::Error::other(format!(
            "cannot resolve {host} now: every resolver is busy"
        )));
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(result) = answer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return result;
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("resolving {host} timed out"),
            ));
        }
        // The answer's wake-up cannot be lost: it is queued for this task's worker, which only
        // reads its queue once this task has yielded here.
        reactor::park_until(State::Resolve, deadline);
    }
}

/// The resolver threads' queue, started on first use.
fn resolvers() -> &'static Sender<Lookup> {
    static QUEUE: OnceLock<Sender<Lookup>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded::<Lookup>(QUEUED_LOOKUPS);
        for index in 0..RESOLVER_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("resolver-{index}"))
                .spawn(move || {
                    for lookup in rx.iter() {
                        let result = (lookup.host.as_str(), lookup.port)
                            .to_socket_addrs()
                            .map(Iterator::collect);
                        *lookup.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                        lookup.waker.wake();
                    }
                });
            if let Err(e) = spawned {
                log::warn!("cannot start a resolver thread: {e}");
            }
        }
        tx
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_resolve_off_a_worker() {
        let literal = resolve("127.0.0.2", 80, Duration::from_secs(5)).unwrap();
        assert_eq!(literal, vec![SocketAddr::from(([127, 0, 0, 2], 80))]);
        let named = resolve("localhost", 8080, Duration::from_secs(5)).unwrap();
        assert!(
            named
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback())
        );
    }
}
