//! ringcrawl: fetch the HTML titles of huge URL lists over io_uring.
//!
//! Data flow (see ARCHITECTURE.md): URL lists are streamed line by line (`intake`), parsed
//! and routed by a hash of the host to one of N worker threads (`runtime`), each a
//! tokio-uring runtime with its own resolver (`dns`), per-host scheduler, keep-alive pool and
//! sockets (`net`). A URL is fetched end to end by `fetch` (redirects, limits, deadline) using
//! the sans-IO HTTP client (`http`) and title extractor (`html`), and becomes one `Record`,
//! appended to the JSON Lines journal (`journal`). The daemon (`daemon`, `spool`) feeds the
//! same engine from a spool directory with exactly-once journaling.

pub mod app;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod daemon;
pub mod dns;
pub mod error;
pub mod fetch;
pub mod html;
pub mod http;
pub(crate) mod intake;
pub(crate) mod journal;
pub mod load;
pub mod net;
pub(crate) mod options;
pub mod pool;
pub(crate) mod progress;
pub(crate) mod record;
pub mod runtime;
pub mod sched;
pub(crate) mod spool;
