//! Sockets and threads: the listener and its acceptor, the fixed worker pool (its event loops and
//! tasks are `crate::runtime`'s, below this module),
//! access control by client address, the PROXY protocol, orderly shutdown, and the stream (plain TCP
//! or TLS) a connection carries.
//!
//! ```text
//!  acceptor ──(a bounded channel per worker)──> worker: reactor (mio) ──> tasks, one per connection
//!     │  503 when full                               ▲ readiness, deadlines, entry progress
//!     └─ least-loaded worker                         └─ Socket / Signal waits yield to it
//! ```
//! A worker never waits on a peer: a task that would block yields (see `crate::runtime`), so idle
//! keep-alive clients, slow senders, slow readers and slow origins cost a task, not a thread.

pub mod acl;
pub mod conn;
mod listener;
pub mod proxy_protocol;
pub mod resolve;
pub mod sendfile;
pub mod server;
pub mod shutdown;
pub mod socket;
pub mod stream;
mod timeouts;

pub use crate::runtime::{Signal, reactor};
pub use conn::{Authority, Conn, Layer, PeerTrust};
pub use server::{FirstBytes, Handler, Server, ServerConfig, ServerStats, ServerTls};
pub use shutdown::Shutdown;
pub use socket::{Side, Socket};
pub use stream::Stream;
pub use timeouts::ClientTimeouts;
