//! The engine: one OS thread per worker, each running its own tokio-uring runtime with its
//! own resolver, per-host scheduler and keep-alive pool. Jobs are routed by a hash of the
//! host through bounded channels (backpressure to intake); finished records go to one
//! `Sender<Record>` (the journal writer).

use std::sync::Arc;

use crate::record::Record;

/// One URL to fetch. `url` is the trimmed input line; `src`/`line` are set for spool input.
#[derive(Clone, Debug)]
pub struct Job {
    pub url: String,
    pub src: Option<Arc<str>>,
    pub line: Option<u64>,
}

/// Where finished records go (the journal writer thread's channel).
pub type RecordSender = std::sync::mpsc::SyncSender<Record>;

/// End-of-run (or live) counters, summed over workers.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub urls: u64,
    /// Records by outcome: `ok` plus one entry per error kind.
    pub ok: u64,
    pub errors: std::collections::BTreeMap<crate::error::ErrorKind, u64>,
    pub bytes_read: u64,
    pub peak_in_flight: u64,
    pub dns_lookups: u64,
    pub connections_opened: u64,
    pub connections_reused: u64,
    pub tls_full_handshakes: u64,
    pub tls_resumed_handshakes: u64,
    pub elapsed: std::time::Duration,
}

/// Why the engine could not start (clear one-line messages for the binary edge).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("io_uring is not available ({0}); ringcrawl needs Linux 5.11+ without a seccomp filter blocking io_uring_setup")]
    NoUring(String),
    #[error("cannot read CA file {0}: {1}")]
    CaFile(String, String),
    #[error(transparent)]
    Selector(#[from] crate::html::HtmlError),
    #[error("cannot start worker thread: {0}")]
    Thread(String),
}

/// Returned by [`Engine::submit`] once the engine is stopping.
#[derive(Debug, thiserror::Error)]
#[error("engine is stopping")]
pub struct Stopped;

/// Handle to the running worker threads. `Send + Sync`: intake threads share it.
pub struct Engine {
    _private: (),
}

impl Engine {
    /// Start `opts.threads` workers. Every submitted job yields exactly one record on
    /// `records` (unless abandoned by [`Engine::drain`]).
    pub fn start(
        opts: &crate::config::FetchOptions,
        records: RecordSender,
    ) -> Result<Engine, EngineError> {
        let _ = (opts, records);
        todo!("lead")
    }

    /// Parse and route one job; an invalid URL becomes an `invalid_url` record at once.
    /// Blocks while the target worker's queue is full (backpressure).
    pub fn submit(&self, job: Job) -> Result<(), Stopped> {
        let _ = job;
        todo!("lead")
    }

    /// Jobs submitted and not yet recorded.
    pub fn in_flight(&self) -> u64 {
        todo!("lead")
    }

    /// A snapshot of the counters.
    pub fn summary(&self) -> Summary {
        todo!("lead")
    }

    /// Wait until every submitted job has its record, then stop the workers.
    pub fn finish(self) -> Summary {
        todo!("lead")
    }

    /// Stop taking jobs, let in-flight ones finish for up to `grace`, then abandon the rest
    /// (no record is written for an abandoned job), and stop the workers.
    pub fn drain(self, grace: std::time::Duration) -> Summary {
        let _ = grace;
        todo!("lead")
    }
}
