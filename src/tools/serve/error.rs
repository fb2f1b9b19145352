//! What stops `porter serve` from starting (or from shutting down cleanly). Requests never fail this
//! way: their problems become status codes in the handler.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::cookies::StoreError;

#[derive(Debug)]
pub enum ServeError {
    /// `--root` is missing or not a folder.
    Root(PathBuf, io::Error),
    /// The cookies file cannot be read, moved aside or (at shutdown) written.
    Cookies(StoreError),
    /// The event log cannot be opened for appending.
    EventLog(PathBuf, io::Error),
    /// The listening socket cannot be bound.
    Listen(SocketAddr, io::Error),
    /// Threads, signals or stdout failed.
    Io(io::Error),
    /// `--tls`: the CA or the server's certificate cannot be made.
    Tls(crate::tls::serve::ServeTlsError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Root(p, e) => write!(f, "cannot serve --root {}: {e}", p.display()),
            ServeError::Cookies(e) => e.fmt(f),
            ServeError::EventLog(p, e) => {
                write!(f, "cannot open event log {}: {e}", p.display())
            }
            ServeError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServeError::Io(e) => e.fmt(f),
            ServeError::Tls(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Root(_, e)
            | ServeError::EventLog(_, e)
            | ServeError::Listen(_, e)
            | ServeError::Io(e) => Some(e),
            ServeError::Cookies(e) => Some(e),
            ServeError::Tls(e) => Some(e),
        }
    }
}

impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        ServeError::Io(e)
    }
}

impl From<StoreError> for ServeError {
    fn from(e: StoreError) -> Self {
        ServeError::Cookies(e)
    }
}
