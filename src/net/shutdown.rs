//! The shutdown flag: set once by SIGINT/SIGTERM (or a test), seen by the acceptor and the workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::runtime::Mutex;

/// A cloneable handle to one shared shutdown flag and the wakers of the threads sleeping in `poll`.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    requested: AtomicBool,
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::Acquire)
    }

    /// Asks every thread to stop; sleeping pollers are woken.
    pub fn request(&self) {
        self.inner.requested.store(true, Ordering::Release);
        for waker in self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = waker.wake();
        }
    }

    /// Registers a poller's waker to be woken on shutdown.
    pub fn add_waker(&self, waker: Arc<mio::Waker>) {
        if self.is_requested() {
            let _ = waker.wake();
        }
        self.inner
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
    }

    /// Turns the first SIGINT or SIGTERM into a shutdown request; a second one exits at once.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        log::info!("signal {signal}: shutting down (send again to exit at once)");
                        shutdown.request();
                    } else {
                        log::warn!("second signal: exiting now");
                        std::process::exit(1);
                    }
                }
            })?;
        Ok(())
    }
}
