//! Plain types shared by the engine, its workers and the fetch path: a [`Job`] (one input
//! line to fetch), the [`WorkItem`] a worker queues, per-worker [`Counters`] (with the
//! fetch-duration histogram, [`DurationHistogram`]) and the [`Summary`] they add up to. A
//! leaf of the module graph: no I/O, no runtime.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dns::DnsStats;
use crate::error::ErrorKind;
use crate::record::{now_rfc3339, Record, RecordError};

/// One URL to fetch. `url` is the trimmed input line; `src`/`line` are set for spool input.
#[derive(Clone, Debug)]
pub struct Job {
    pub url: String,
    pub src: Option<Arc<str>>,
    pub line: Option<u64>,
    /// Attempts started so far (0 before the first; retries add to it).
    pub attempts: u32,
    /// When the first attempt started (the record's `ms` runs from here).
    pub started: Option<Instant>,
}

impl Job {
    /// A job for an input line, not yet attempted.
    pub fn new(url: String, src: Option<Arc<str>>, line: Option<u64>) -> Job {
        Job {
            url,
            src,
            line,
            attempts: 0,
            started: None,
        }
    }

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
            attempts: self.attempts,
            ms: self.started.map_or(0.0, |t| millis(t.elapsed())),
            ..Record::default()
        }
    }
}

/// A duration in milliseconds with microsecond precision (the record's `ms`).
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
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
    /// Attempts that failed transiently and were tried again later.
    pub retries: u64,
    /// robots.txt files fetched (with `--robots`).
    pub robots_fetches: u64,
    pub peak_in_flight: u64,
    pub dns: DnsStats,
    pub connections_opened: u64,
    pub connections_reused: u64,
    pub tls_full_handshakes: u64,
    pub tls_resumed_handshakes: u64,
    pub elapsed: Duration,
    /// Durations of the records of URLs that were tried (see [`DurationHistogram`]).
    pub durations: DurationCounts,
}

/// Upper bounds of the fetch-duration histogram's buckets, in microseconds (the last
/// bucket, past them, is `+Inf`): from a loopback answer to a page fetched after retries.
pub const DURATION_BUCKETS_US: [u64; 14] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
];
/// Buckets of the histogram: one per bound, and `+Inf`.
const DURATION_SLOTS: usize = DURATION_BUCKETS_US.len() + 1;

/// A snapshot of fetch durations: how many fell in each bucket (not cumulative; the last is
/// past every bound) and their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurationCounts {
    pub buckets: [u64; DURATION_SLOTS],
    pub sum_us: u64,
}

impl DurationCounts {
    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Fetch durations of one worker: one atomic per bucket and the sum, written by that
/// worker's thread only (no lock, two relaxed adds per record), summed when read.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    buckets: [AtomicU64; DURATION_SLOTS],
    sum_us: AtomicU64,
}

impl DurationHistogram {
    /// Count one duration of `us` microseconds.
    pub fn observe(&self, us: u64) {
        let slot = DURATION_BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Add these counts to `sum`.
    pub fn add_to(&self, sum: &mut DurationCounts) {
        for (total, b) in sum.buckets.iter_mut().zip(&self.buckets) {
            *total += b.load(Ordering::Relaxed);
        }
        sum.sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

/// Live counters of one worker (or of the engine itself, for invalid URLs): atomics written
/// by one thread, read by whoever asks for a [`Summary`]. No lock on the URL path.
#[derive(Debug, Default)]
pub struct Counters {
    pub recorded: AtomicU64,
    pub ok: AtomicU64,
    pub errors: [AtomicU64; ErrorKind::ALL.len()],
    pub bytes_read: AtomicU64,
    pub retries: AtomicU64,
    pub robots_fetches: AtomicU64,
    /// The worker's resolver counters, as of its last record.
    pub dns: Mutex<DnsStats>,
    pub conns_opened: AtomicU64,
    pub conns_reused: AtomicU64,
    /// The `ms` of each record of a URL that was tried (`attempts` at least 1).
    pub durations: DurationHistogram,
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
        if rec.attempts > 0 {
            // `ms` has microsecond precision; a negative or NaN one cannot happen (and
            // would count as 0).
            self.durations.observe((rec.ms * 1000.0).round() as u64);
        }
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
        sum.retries += get(&self.retries);
        sum.robots_fetches += get(&self.robots_fetches);
        sum.dns
            .add(&self.dns.lock().unwrap_or_else(|e| e.into_inner()));
        sum.connections_opened += get(&self.conns_opened);
        sum.connections_reused += get(&self.conns_reused);
        self.durations.add_to(&mut sum.durations);
    }
}

/// How the workers are doing, for whoever watches them: a heartbeat per worker (each turn
/// of its loop, at least every few seconds while it is alive, busy or idle) and the first
/// failure (a panic outside the per-URL catch: the engine then stops).
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Per worker: milliseconds after `started` of its last loop turn.
    beats: Vec<AtomicU64>,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Health {
    pub fn new(workers: usize) -> Health {
        Health {
            started: Instant::now(),
            beats: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Worker `worker` is alive now.
    pub fn beat(&self, worker: usize) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.beats[worker].store(ms, Ordering::Relaxed);
    }

    /// How long ago the least recently alive worker last said so.
    pub fn stalest(&self) -> Duration {
        let now = self.started.elapsed();
        let oldest = self
            .beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        now.saturating_sub(Duration::from_millis(oldest))
    }

    /// A worker failed; the first reason is kept.
    pub fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(why);
        self.failed.store(true, Ordering::Release);
    }

    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Why the engine failed, if it did.
    pub fn failure(&self) -> Option<String> {
        if !self.has_failed() {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_by_outcome() {
        let c = Counters::default();
        let job = Job::new("http://a.test/".into(), None, None);
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
        // Records made without a fetch (attempts 0) have no duration.
        assert_eq!(sum.durations.count(), 0);
    }

    #[test]
    fn durations_of_tried_urls_fall_in_their_buckets() {
        let c = Counters::default();
        for (ms, attempts) in [(0.004, 1), (5.0, 1), (5.001, 2), (1e6, 1), (7.0, 0)] {
            c.count(&Record {
                ms,
                attempts,
                ..Record::default()
            });
        }
        let mut sum = Summary::default();
        c.add_to(&mut sum);
        let d = sum.durations;
        assert_eq!(d.count(), 4, "the record with attempts 0 is left out");
        // A bound is inclusive (`le`): 5 ms is in the first bucket, 5.001 ms in the second.
        assert_eq!(d.buckets[0], 2);
        assert_eq!(d.buckets[1], 1);
        assert_eq!(d.buckets[DURATION_BUCKETS_US.len()], 1, "past every bound");
        assert_eq!(d.sum_us, 4 + 5_000 + 5_001 + 1_000_000_000);
    }

    #[test]
    fn health_keeps_the_first_failure_and_the_stalest_beat() {
        let h = Health::new(2);
        assert_eq!(h.failure(), None);
        std::thread::sleep(Duration::from_millis(30));
        h.beat(0);
        // Worker 1 has not beaten since the start.
        assert!(h.stalest() >= Duration::from_millis(30));
        h.beat(1);
        assert!(h.stalest() < Duration::from_millis(30));
        h.fail("first".into());
        h.fail("second".into());
        assert!(h.has_failed());
        assert_eq!(h.failure().as_deref(), Some("first"));
    }

    #[test]
    fn panic_messages_of_both_payload_types() {
        let a = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        let b = std::panic::catch_unwind(|| panic!("formatted {}", 3)).unwrap_err();
        assert_eq!(panic_message(&*a), "static");
        assert_eq!(panic_message(&*b), "formatted 3");
    }
}
