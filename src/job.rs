//! Plain types shared by the engine, its workers and the fetch path: a [`Job`] (one input
//! line to fetch), the [`WorkItem`] a worker queues, per-worker [`Counters`] and the
//! [`Summary`] they add up to. A leaf of the module graph: no I/O, no runtime.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ErrorKind;
use crate::record::{now_rfc3339, Record, RecordError};

/// One URL to fetch. `url` is the trimmed input line; `src`/`line` are set for spool input.
#[derive(Clone, Debug)]
pub struct Job {
    pub url: String,
    pub src: Option<Arc<str>>,
    pub line: Option<u64>,
}

impl Job {
    /// A failure record for this job made without a fetch (invalid input, a panic).
    pub fn error_record(&self, kind: ErrorKind, message: String) -> Record {
        Record {
            url: self.url.clone(),
            error: Some(RecordError {
                kind,
                message,
                hop: None,
            }),
            ts: now_rfc3339(),
            src: self.src.as_deref().map(str::to_owned),
            line: self.line,
            ..Record::default()
        }
    }
}

/// A job with its parsed URL, as routed to and queued in a worker.
pub struct WorkItem {
    pub job: Job,
    pub url: url::Url,
}

/// End-of-run (or live) counters, summed over workers.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub urls: u64,
    /// Records by outcome: `ok` plus one entry per error kind.
    pub ok: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub bytes_read: u64,
    pub peak_in_flight: u64,
    pub dns_lookups: u64,
    pub connections_opened: u64,
    pub connections_reused: u64,
    pub tls_full_handshakes: u64,
    pub tls_resumed_handshakes: u64,
    pub elapsed: Duration,
}

/// Live counters of one worker (or of the engine itself, for invalid URLs): atomics written
/// by one thread, read by whoever asks for a [`Summary`]. No lock on the URL path.
#[derive(Debug, Default)]
pub struct Counters {
    pub recorded: AtomicU64,
    pub ok: AtomicU64,
    pub errors: [AtomicU64; ErrorKind::ALL.len()],
    pub bytes_read: AtomicU64,
    pub dns_lookups: AtomicU64,
    pub conns_opened: AtomicU64,
    pub conns_reused: AtomicU64,
}

impl Counters {
    /// Count one finished record.
    pub fn count(&self, rec: &Record) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(rec.bytes, Ordering::Relaxed);
        match &rec.error {
            None => self.ok.fetch_add(1, Ordering::Relaxed),
            Some(e) => self.errors[e.kind.index()].fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Add these counters to `sum`.
    pub fn add_to(&self, sum: &mut Summary) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        sum.urls += get(&self.recorded);
        sum.ok += get(&self.ok);
        for (kind, n) in ErrorKind::ALL.iter().zip(&self.errors) {
            let n = get(n);
            if n > 0 {
                *sum.errors.entry(*kind).or_default() += n;
            }
        }
        sum.bytes_read += get(&self.bytes_read);
        sum.dns_lookups += get(&self.dns_lookups);
        sum.connections_opened += get(&self.conns_opened);
        sum.connections_reused += get(&self.conns_reused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_by_outcome() {
        let c = Counters::default();
        let job = Job {
            url: "http://a.test/".into(),
            src: None,
            line: None,
        };
        c.count(&Record {
            bytes: 10,
            ..Record::default()
        });
        c.count(&job.error_record(ErrorKind::Timeout, "slow".into()));
        c.count(&job.error_record(ErrorKind::Timeout, "slow".into()));
        let mut sum = Summary::default();
        c.add_to(&mut sum);
        c.add_to(&mut sum);
        assert_eq!((sum.urls, sum.ok, sum.bytes_read), (6, 2, 20));
        assert_eq!(sum.errors.get(&ErrorKind::Timeout), Some(&4));
        assert_eq!(sum.errors.len(), 1);
    }
}
