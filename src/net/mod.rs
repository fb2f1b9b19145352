//! Sockets and threads: the listener and its acceptor, the fixed worker pool, the parking of idle
//! connections, access control by client address, the PROXY protocol, orderly shutdown, and the
//! stream (plain TCP or TLS) a connection carries.
//!
//! ```text
//!  acceptor ──(bounded channel)──> workers ──> Handler::handle(request)
//!     │  503 when full              │   ▲
//!     │                     idle    ▼   │ readable
//!     │                           parker (mio)
//! ```
//! A worker only ever holds a connection that has bytes to read, so idle keep-alive clients and
//! slow senders cost a parked socket, not a thread.

pub mod acl;
pub mod client_stream;
pub mod conn;
mod park;
pub mod proxy_protocol;
pub mod sendfile;
pub mod server;
pub mod shutdown;
pub mod stream;
mod timeouts;

pub use conn::{Authority, Conn, Layer};
pub use server::{FirstBytes, Handler, Server, ServerConfig, ServerStats};
pub use shutdown::Shutdown;
pub use stream::Stream;
pub use timeouts::ClientTimeouts;
