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
