//! ringcrawl: fetch the HTML titles of huge URL lists over io_uring.
//!
//! Data flow (see ARCHITECTURE.md): URL lists are streamed line by line (`intake`), parsed
//! and routed by a hash of the host (`engine`) to one of N worker threads (`worker`), each a
//! tokio-uring runtime with its own resolver (`dns`), per-host scheduler (`sched`), keep-alive
//! pool (`pool`) and sockets (`net`). A URL is fetched end to end by `fetch` (redirects,
//! limits, deadline), which drives the sans-IO HTTP exchange (`http`, through `conn`) into
//! the title extractor (`html`), and becomes one `Record`, appended to the JSON Lines journal
//! (`journal`). The daemon (`daemon`, `spool`) feeds the same engine from a spool directory
//! with exactly-once journaling; with `[cluster]`, daemons on several machines share one crawl
//! through NATS JetStream (`cluster`). The binary is `app::main`; only `http` and `html` are
//! API (the fuzz targets and benches use them).

pub mod app;
mod breaker;
mod cli;
mod clidoc;
mod cluster;
mod config;
mod conn;
mod daemon;
mod dns;
mod engine;
mod error;
mod failpoint;
mod fetch;
mod gate;
pub mod html;
pub mod http;
mod intake;
mod ipgate;
mod job;
mod journal;
mod load;
mod metrics;
mod net;
mod netpolicy;
mod options;
mod polite;
mod pool;
mod progress;
mod proxy;
mod record;
mod resume;
mod retry;
mod robots;
mod sched;
mod signals;
mod spill;
mod spool;
mod worker;
