//! What the operator sees and sets: the proxy's own pages (the status page, metrics, the PAC
//! script, the setup page), the counters behind them and the access log lines, and who may PURGE. The request
//! path only counts into `metrics`; nothing here is on the way of a forwarded response.

mod dashboard;
pub mod hosts;
pub mod logline;
pub mod metrics;
pub mod pac;
pub mod pages;
pub mod purge;
pub mod savings;
pub mod setup;
