//! A cluster node: `ringcrawl run` with `[cluster]` (or `--nats`). The spool daemon (`daemon`)
//! runs as usual, with this node as its [`Backend`]: the daemon's list readers hand their
//! lines to [`Node`]'s spool intake, which publishes them into the cluster (a list leaves
//! `cur/` once every line has its PubAck), and the node's own engine fetches the lines of the
//! partitions the node holds.
//!
//! Threads and tasks: the engine's io_uring workers; a tokio current-thread runtime on the
//! `nats` thread (the client and every task below); a feeder thread (`Engine::submit_line`
//! blocks, which no task may do) and a records thread (the engine's record channel into the
//! runtime).
//!
//! - Ownership (`Owner`, a round every third of a lease, and soon after a node appears or
//!   leaves or a lease is given back, seen by watching both buckets): a heartbeat in the node bucket, a
//!   CAS update of every lease held (a lease that cannot be renewed in time is dropped and its
//!   partition no longer consumed), then `lease::plan`: take free partitions up to the fair
//!   share (create), give back extras (stop pulling, release the lease once the partition's
//!   lines in flight are done, at most an ack wait later).
//! - Consuming: one pull task per held partition on its durable consumer `pN`, one pull
//!   request at a time (a batch the server holds until it is full or a second passed, each
//!   message fed as it comes), every message of a pull taken; a node-wide semaphore bounds the
//!   lines in flight. A message is a chunk of lines (`chunk`); each delivery is tracked with its
//!   acker (`inflight`), then its lines are fed to the engine. Deliveries in flight longer than
//!   a third of the ack wait get an in-progress ack.
//! - Records: gathered by the records thread for a millisecond, published to `PREFIX.records`
//!   with `Nats-Msg-Id` = `LIST:LINE`, retried until stored; a delivery is acked once every
//!   line in it has its record stored. A line is never acked before its record is stored, so
//!   a crash anywhere redelivers it (when its partition is taken over, or after the ack
//!   wait), and the record published again is dropped by the stream's duplicate window (and
//!   by `collect`).
//! - Stop (SIGTERM, through `Backend::drain`): stop pulling (lines of the fetch in progress
//!   are nak'd with a short delay), let the engine drain, wait for the records to be
//!   stored, nak the lines left without a record (redelivered at once to the next owner),
//!   delete the leases and the heartbeat, so the others take over at once.
//! - Losing NATS: the client reconnects forever; renewals fail, so the leases are dropped
//!   locally before the server can give them to another node, pulling stops, records wait and
//!   are published when the connection is back, and the next rounds take partitions again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::kv;
use async_nats::jetstream::message::{AckKind, Acker};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::chunk;
use super::inflight::{InFlight, LineKey};
use super::lease::{self, LeaseClock, View};
use super::outbox::Outbox;
use super::submit::{list_id_of, publish_stored};
use super::wire::{self, lease_key, lease_partition};
use super::{ClusterError, Streams};
use crate::config::{ClusterConfig, Config};
use crate::daemon::{self, Backend, DaemonError, Event};
use crate::engine::{
    send_until, Engine, EngineError, EngineStats, Stopped, MIN_QUEUED_TOTAL, QUEUED_PER_SLOT,
};
use crate::intake::InputLine;
use crate::job::Summary;
use crate::journal::{Progress, RECORD_CHANNEL_CAPACITY};
use crate::metrics::ClusterGauges;
use crate::options::FetchOptions;
use crate::record::Record;
use crate::spool::{self, JobSink};
use crate::worker::RecordSender;

/// Lines in flight on one node (pulled, not yet acked), per connection slot of its budget...
pub const IN_FLIGHT_PER_SLOT: usize = QUEUED_PER_SLOT + 2;
/// ...and at least as many as the engine looks ahead (what the spool daemon gives it from a
/// long list): with fewer, a host's later lines reach the engine after its connection went.
pub const MIN_IN_FLIGHT: usize = MIN_QUEUED_TOTAL + 4096;
/// Messages (chunks) one partition's consumer hands out unacked at most (all nodes together).
pub const MAX_ACK_PENDING: i64 = 1000;
/// Lines one pull request asks for.
pub const PULL_BATCH: usize = 256;
/// A pull request is held by the server this long at most, unless its batch is full first
/// (an idle partition costs one request per this period, and a stopping pull task may wait
/// this long).
pub const PULL_WAIT: Duration = Duration::from_secs(1);
/// A waiting pull without an answer this long after its expiry is over.
pub const PULL_WAIT_SLACK: Duration = Duration::from_millis(200);
/// A line refused while stopping comes back after this, not into the same pull request.
pub const NAK_DELAY: Duration = Duration::from_secs(1);
/// While a partition is being given back, how often the owner looks whether it drained.
pub const RELEASE_CHECK: Duration = Duration::from_millis(50);
/// After a bucket event, the next round comes at most this much later (events come in bursts).
pub const WAKE_DEBOUNCE: Duration = Duration::from_millis(100);
/// Before its first takes, a node waits this long (at most a round) after its first
/// heartbeat, so that nodes started together count each other.
pub const JOIN_SETTLE: Duration = Duration::from_secs(1);
/// Pause before pulling again after a failed pull, or opening the streams again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How often the spool intake's PubAck counts go to the daemon (a list leaves `cur/`).
pub const DURABLE_FLUSH: Duration = Duration::from_millis(50);
/// At a stop, how long the records, naks and lease releases may take to reach the server.
pub const STOP_FLUSH: Duration = Duration::from_secs(10);
/// Shortest period of the in-progress acks.
pub const MIN_PROGRESS_PERIOD: Duration = Duration::from_millis(100);
/// How often records without their PubAck are looked at (sent again after
/// [`API_TIMEOUT`](super::API_TIMEOUT), or after their pause when their send failed).
pub const RESEND_CHECK: Duration = Duration::from_millis(500);
/// Capacity of the channels into and out of the runtime.
const CHANNEL: usize = 1024;
/// The records thread gathers the records that come this long after the first of a batch...
pub const RECORD_BATCH_WAIT: Duration = Duration::from_millis(1);
/// ...up to this many.
pub const RECORD_BATCH: usize = 256;

/// Run the daemon as a cluster node until SIGTERM/SIGINT (exit 0 after a clean drain).
pub(crate) fn run(cfg: Config) -> Result<(), DaemonError> {
    let cluster = cfg
        .restart
        .cluster
        .clone()
        .expect("run is called with a cluster configuration");
    let (tx, rx) = mpsc::channel();
    daemon::forward_signals(tx.clone())?;
    let runtime = Runtime::start().map_err(|e| DaemonError::Thread(std::io::Error::other(e)))?;
    let options = runtime
        .handle
        .block_on(super::connect_options(&cluster, "ringcrawl node"))
        .map_err(|e| DaemonError::Thread(std::io::Error::other(e.to_string())))?;
    let spool_root = cfg.restart.spool.clone();
    let events = tx.clone();
    daemon::serve(
        cfg,
        move |opts, journal| {
            Node::start(NodeSetup {
                cluster,
                options,
                spool_root,
                opts,
                journal,
                events,
                runtime,
            })
        },
        tx,
        rx,
    )
    .map(|_| ())
}

/// The `nats` thread and its runtime, driven until told to stop.
struct Runtime {
    handle: tokio::runtime::Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Runtime {
    fn start() -> Result<Runtime, ClusterError> {
        let rt = super::runtime()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nats".into())
            .spawn(move || {
                let _ = rt.block_on(stopped);
            })
            .map_err(ClusterError::Runtime)?;
        Ok(Runtime {
            handle,
            stop,
            thread,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Where the node is in its life (the owner task watches it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stopping: no new work, leases kept while the engine drains.
    Draining,
    /// Nak what is left, give every lease back, and end.
    Release,
}

/// One delivery of a URL message (a chunk of lines, or one line), until every line of it has
/// its record stored (or it is nak'd).
struct Delivery {
    acker: Arc<Acker>,
    /// Its lines' places in the node's in-flight bound.
    _permits: OwnedSemaphorePermit,
}

/// What the node's threads and tasks share.
struct Shared {
    node_id: String,
    stopping: AtomicBool,
    deliveries: Mutex<InFlight<Delivery>>,
    /// What the metrics endpoint reports (the records stored in the records stream are
    /// counted there).
    gauges: Arc<ClusterGauges>,
    /// Records the records task is done with: stored, or dropped for having no list and line
    /// (what a stop waits for; `gauges` counts only the stored ones).
    records_done: AtomicU64,
    /// Spool lines handed to the intake and not yet stored.
    spool_pending: AtomicU64,
    /// Spool lines stored, per `src`, not yet reported to the daemon.
    durable: Mutex<HashMap<String, u64>>,
    events: Sender<Event>,
    status: Mutex<String>,
}

impl Shared {
    /// A line's record is stored: ack the deliveries it completed (those whose every line
    /// now has its record).
    async fn stored(&self, key: &LineKey) {
        let done = self.deliveries.lock().expect("lock").stored(key);
        for d in done {
            let _ = d.acker.ack_with(AckKind::Ack).await;
        }
    }

    /// A line will have no record here: nak the deliveries holding it (`kind`: a nak).
    async fn refuse(&self, key: &LineKey, kind: AckKind) {
        let ds = self.deliveries.lock().expect("lock").refuse(key);
        for d in ds {
            let _ = d.acker.ack_with(kind).await;
        }
    }

    /// Deliveries of partition `p` in flight here.
    fn in_flight_of(&self, p: u32) -> usize {
        self.deliveries.lock().expect("lock").of_partition(p)
    }

    /// Report spool PubAcks to the daemon (a list leaves `cur/` once all are in).
    fn flush_durable(&self) {
        let per_src: Vec<(String, u64)> = self.durable.lock().expect("lock").drain().collect();
        if per_src.is_empty() {
            return;
        }
        let records = per_src.iter().map(|(_, n)| n).sum();
        let _ = self
            .events
            .send(Event::Durable(Progress { per_src, records }));
    }
}

/// The lines of a delivery for the engine (or the feeder's signal to end).
enum Intake {
    Lines(Vec<InputLine>, Arc<str>),
    Stop,
}

/// A spool line for the cluster.
struct SpoolLine {
    src: String,
    list: Arc<str>,
    line: InputLine,
}

/// What [`Node::start`] needs.
struct NodeSetup<'a> {
    cluster: ClusterConfig,
    options: async_nats::ConnectOptions,
    spool_root: PathBuf,
    opts: &'a FetchOptions,
    journal: RecordSender,
    events: Sender<Event>,
    runtime: Runtime,
}

/// The daemon's backend in cluster mode.
pub(crate) struct Node {
    shared: Arc<Shared>,
    engine: Option<Arc<Engine>>,
    feeder: Option<JoinHandle<()>>,
    intake: tokio::sync::mpsc::Sender<Intake>,
    spool: tokio::sync::mpsc::Sender<SpoolLine>,
    /// List ids of the spool lists seen, by `src`.
    lists: Mutex<HashMap<String, Arc<str>>>,
    spool_root: PathBuf,
    phase: watch::Sender<Phase>,
    released: Mutex<mpsc::Receiver<()>>,
    runtime: Option<Runtime>,
    /// The daemon's journal channel, kept open: its writer ends when the last sender goes.
    _journal: RecordSender,
}

impl Node {
    fn start(s: NodeSetup<'_>) -> Result<Node, EngineError> {
        let (rec_tx, rec_rx) = mpsc::sync_channel::<Record>(RECORD_CHANNEL_CAPACITY);
        let engine = Arc::new(Engine::start(s.opts, rec_tx)?);
        let shared = Arc::new(Shared {
            node_id: s.cluster.node_id.clone().unwrap_or_else(default_node_id),
            stopping: AtomicBool::new(false),
            deliveries: Mutex::new(InFlight::default()),
            gauges: Arc::new(ClusterGauges::default()),
            records_done: AtomicU64::new(0),
            spool_pending: AtomicU64::new(0),
            durable: Mutex::new(HashMap::new()),
            events: s.events,
            status: Mutex::new("cluster: connecting".into()),
        });
        let handle = s.runtime.handle.clone();
        let (intake_tx, mut intake_rx) = tokio::sync::mpsc::channel::<Intake>(CHANNEL);
        let (records_tx, records_rx) = tokio::sync::mpsc::channel::<Vec<Record>>(CHANNEL);
        let (spool_tx, spool_rx) = tokio::sync::mpsc::channel::<SpoolLine>(CHANNEL);
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let (released_tx, released_rx) = mpsc::channel();

        // The engine's records into the runtime, in batches: the records that came within
        // RECORD_BATCH_WAIT of the first (the workers' sends wake no one meanwhile), so the
        // runtime, the client's writes, the server's reads and the PubAcks back all go by
        // batch rather than by record.
        let spawned = std::thread::Builder::new()
            .name("cluster-records".into())
            .spawn(move || {
                while let Ok(first) = rec_rx.recv() {
                    std::thread::sleep(RECORD_BATCH_WAIT);
                    let mut batch = vec![first];
                    batch.extend(rec_rx.try_iter().take(RECORD_BATCH - 1));
                    if records_tx.blocking_send(batch).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the records thread");
        }
        // Pulled lines into the engine (submit_line blocks while a worker's queue is full).
        let (eng, sh, h) = (engine.clone(), shared.clone(), handle.clone());
        let feeder = std::thread::Builder::new()
            .name("cluster-feed".into())
            .spawn(move || {
                while let Some(Intake::Lines(lines, list)) = intake_rx.blocking_recv() {
                    for line in lines {
                        let key = (list.clone(), line.number);
                        let refused = sh.stopping.load(Ordering::Acquire)
                            || eng.submit_line(line, Some(list.clone())).is_err();
                        if refused {
                            let sh = sh.clone();
                            h.spawn(
                                async move { sh.refuse(&key, AckKind::Nak(Some(NAK_DELAY))).await },
                            );
                        }
                    }
                }
            })
            .ok();

        let in_flight = (s.opts.concurrency * IN_FLIGHT_PER_SLOT).max(MIN_IN_FLIGHT);
        let task = NodeTask {
            cluster: s.cluster,
            options: s.options,
            shared: shared.clone(),
            intake: intake_tx.clone(),
            in_flight: Arc::new(Semaphore::new(in_flight)),
        };
        handle.spawn(task.run(phase_rx, records_rx, spool_rx, released_tx));
        Ok(Node {
            shared,
            engine: Some(engine),
            feeder,
            intake: intake_tx,
            spool: spool_tx,
            lists: Mutex::new(HashMap::new()),
            spool_root: s.spool_root,
            phase: phase_tx,
            released: Mutex::new(released_rx),
            runtime: Some(s.runtime),
            _journal: s.journal,
        })
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine present until drain")
    }

    /// The list id of spool list `src` (in `cur/`): digested once, then remembered.
    fn list_of(&self, src: &str) -> std::io::Result<Arc<str>> {
        if let Some(id) = self.lists.lock().expect("lock").get(src) {
            return Ok(id.clone());
        }
        let mut f = std::fs::File::open(self.spool_root.join(spool::CUR).join(src))?;
        let id: Arc<str> = Arc::from(list_id_of(src, &mut f)?);
        tracing::info!(src, list = %id, "publishing list into the cluster");
        self.lists
            .lock()
            .expect("lock")
            .insert(src.to_string(), id.clone());
        Ok(id)
    }
}

impl JobSink for Node {
    fn submit_line(
        &self,
        line: InputLine,
        src: &Arc<str>,
        stop: Option<&AtomicBool>,
    ) -> Result<(), Stopped> {
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(Stopped);
        }
        let list = self.list_of(src).map_err(|e| {
            tracing::error!(src = &**src, error = %e, "cannot read list to derive its id");
            Stopped
        })?;
        self.shared.spool_pending.fetch_add(1, Ordering::AcqRel);
        let item = SpoolLine {
            src: src.to_string(),
            list,
            line,
        };
        let sent = match stop {
            None => self.spool.blocking_send(item).map_err(|_| Stopped),
            Some(stop) => send_until(
                item,
                stop,
                |item| match self.spool.try_send(item) {
                    Ok(()) => Ok(None),
                    Err(tokio::sync::mpsc::error::TrySendError::Full(item)) => Ok(Some(item)),
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(Stopped),
                },
                || true,
            ),
        };
        sent.inspect_err(|_| {
            self.shared.spool_pending.fetch_sub(1, Ordering::AcqRel);
        })
    }
}

impl Backend for Node {
    fn records_here(&self) -> bool {
        false
    }

    fn in_flight(&self) -> u64 {
        self.engine().in_flight() + self.shared.spool_pending.load(Ordering::Acquire)
    }

    fn drain(mut self, grace: Duration) -> Summary {
        let started = Instant::now();
        self.shared.stopping.store(true, Ordering::Release);
        let _ = self.phase.send(Phase::Draining);
        let _ = self.intake.blocking_send(Intake::Stop);
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        let engine = self.engine.take().and_then(Arc::into_inner);
        let summary = match engine {
            Some(e) => e.drain(grace),
            None => Summary::default(),
        };
        let until = Instant::now() + STOP_FLUSH;
        while Instant::now() < until
            && (self.shared.records_done.load(Ordering::Acquire) < summary.urls
                || self.shared.spool_pending.load(Ordering::Acquire) > 0)
        {
            std::thread::sleep(DURABLE_FLUSH);
        }
        let _ = self.phase.send(Phase::Release);
        let released = self.released.lock().expect("lock").recv_timeout(STOP_FLUSH);
        if released.is_err() {
            tracing::warn!("the NATS server did not confirm the stop; leases expire on their own");
        }
        self.shared.flush_durable();
        if let Some(rt) = self.runtime.take() {
            rt.stop();
        }
        tracing::info!(
            records_stored = self.shared.gauges.records_stored.load(Ordering::Acquire),
            ms = started.elapsed().as_millis() as u64,
            "cluster node stopped"
        );
        summary
    }

    fn failure(&self) -> Option<String> {
        self.engine().stats().failure()
    }

    fn stalest_worker(&self) -> Duration {
        self.engine().stats().health().stalest()
    }

    fn status(&self) -> Option<String> {
        Some(self.shared.status.lock().expect("lock").clone())
    }

    fn engine_stats(&self) -> Option<Arc<EngineStats>> {
        Some(self.engine().stats())
    }

    fn cluster_gauges(&self) -> Option<Arc<ClusterGauges>> {
        Some(self.shared.gauges.clone())
    }
}

/// `HOST-PID-RAND`: unique among the nodes (a restarted node is a new node; its old leases
/// expire).
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// The node's async side, on the runtime.
struct NodeTask {
    cluster: ClusterConfig,
    options: async_nats::ConnectOptions,
    shared: Arc<Shared>,
    intake: tokio::sync::mpsc::Sender<Intake>,
    in_flight: Arc<Semaphore>,
}

impl NodeTask {
    async fn run(
        self,
        mut phase: watch::Receiver<Phase>,
        records: tokio::sync::mpsc::Receiver<Vec<Record>>,
        spool: tokio::sync::mpsc::Receiver<SpoolLine>,
        released: mpsc::Sender<()>,
    ) {
        let NodeTask {
            cluster,
            options,
            shared,
            intake,
            in_flight,
        } = self;
        let addrs = match super::server_addrs(&cluster) {
            Ok(addrs) => addrs,
            Err(e) => {
                tracing::error!(error = %e, "not joining the cluster");
                let _ = released.send(());
                return;
            }
        };
        // A first attempt of its own, so a failure is said once with its cause (the client's
        // retries report only their kind: "IO error"). A stop does not wait for it.
        let first = tokio::select! {
            c = super::connect(&cluster, "ringcrawl node") => c,
            _ = phase.wait_for(|p| *p == Phase::Release) => {
                let _ = released.send(());
                return;
            }
        };
        let client = match first {
            Ok(client) => Ok(client),
            Err(e) => {
                tracing::warn!("{e}; retrying until it answers");
                options.retry_on_initial_connect().connect(addrs).await
            }
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "not joining the cluster");
                let _ = released.send(());
                return;
            }
        };
        let js = super::jetstream(client.clone());
        let mut warned = false;
        let opened = loop {
            if *phase.borrow() == Phase::Release {
                break None;
            }
            // A stop does not wait for a server that does not answer.
            let attempt = tokio::select! {
                o = open(&js, &cluster) => o,
                _ = phase.wait_for(|p| *p == Phase::Release) => break None,
            };
            match attempt {
                Ok(o) => break Some(o),
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "cannot open the cluster's streams yet; retrying");
                        warned = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        _ = phase.changed() => {}
                    }
                }
            }
        };
        let Some((streams, leases, nodes, lease_time)) = opened else {
            let _ = released.send(());
            return;
        };
        tracing::info!(
            node = shared.node_id,
            partitions = streams.partitions,
            lease_ms = lease_time.as_millis() as u64,
            "joined the cluster"
        );
        tokio::spawn(publish_records(records, streams.clone(), shared.clone()));
        tokio::spawn(publish_spool(spool, streams.clone(), shared.clone()));
        tokio::spawn(keep_in_progress(shared.clone(), cluster.ack_wait));
        let sh = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DURABLE_FLUSH).await;
                sh.flush_durable();
            }
        });
        let mut owner = Owner {
            clock: LeaseClock { lease: lease_time },
            cluster,
            shared,
            client,
            streams,
            leases,
            nodes,
            held: BTreeMap::new(),
            intake,
            in_flight,
            live_nodes: 1,
            lag: 0,
        };
        owner.run(phase).await;
        let _ = released.send(());
    }
}

type Opened = (Streams, kv::Store, kv::Store, Duration);

/// The streams and both buckets; the lease time is the lease bucket's max age.
async fn open(
    js: &async_nats::jetstream::Context,
    cfg: &ClusterConfig,
) -> Result<Opened, ClusterError> {
    let streams = Streams::open(js.clone(), cfg).await?;
    let (leases, lease_time) = super::ensure_bucket(
        js,
        &cfg.lease_bucket,
        cfg.lease,
        "ringcrawl partition leases: pN -> node",
    )
    .await?;
    let (nodes, _) = super::ensure_bucket(
        js,
        &cfg.node_bucket,
        lease_time,
        "ringcrawl node heartbeats",
    )
    .await?;
    if lease_time != cfg.lease {
        tracing::info!(
            bucket = cfg.lease_bucket,
            lease_ms = lease_time.as_millis() as u64,
            "the lease bucket keeps the lease time it was created with"
        );
    }
    Ok((streams, leases, nodes, lease_time))
}

/// Publish each record until stored (through the [`Outbox`], at most
/// [`MAX_ACKS_IN_FLIGHT`](super::MAX_ACKS_IN_FLIGHT) at once), then ack its line.
async fn publish_records(
    mut rx: tokio::sync::mpsc::Receiver<Vec<Record>>,
    streams: Streams,
    shared: Arc<Shared>,
) {
    let client = streams.js.client();
    let mut out = Outbox::new(client.clone(), streams.targets.records().clone());
    let mut replies = loop {
        match client.subscribe(out.replies()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot subscribe to the records' PubAcks; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    };
    let mut sweep = tokio::time::interval(RESEND_CHECK);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The list id of the last record (records come in runs of one list).
    let mut last: Option<Arc<str>> = None;
    let mut open = true;
    while open || !out.is_empty() {
        tokio::select! {
            biased;
            Some(m) = replies.next() => {
                if let Some(done) = out.reply(&m) {
                    shared.gauges.records_stored.fetch_add(1, Ordering::Relaxed);
                    shared.records_done.fetch_add(1, Ordering::AcqRel);
                    shared.stored(&(done.list, done.line)).await;
                }
            }
            _ = sweep.tick() => out.resend_due(Instant::now()).await,
            batch = rx.recv(), if open && out.len() < super::MAX_ACKS_IN_FLIGHT => {
                let Some(batch) = batch else {
                    open = false;
                    continue;
                };
                for rec in batch {
                    let (Some(src), Some(line)) = (rec.src.as_deref(), rec.line) else {
                        tracing::error!(url = rec.url, "a record without its list and line; dropped");
                        shared.records_done.fetch_add(1, Ordering::AcqRel);
                        continue;
                    };
                    let list = match &last {
                        Some(l) if **l == *src => l.clone(),
                        _ => last.insert(Arc::from(src)).clone(),
                    };
                    let mut payload = Vec::with_capacity(512);
                    rec.write_line(&mut payload);
                    payload.pop();
                    out.send(list, line, Bytes::from(payload)).await;
                }
            }
        }
    }
}

/// Publish each spool line until stored, then count it for its list.
async fn publish_spool(
    mut rx: tokio::sync::mpsc::Receiver<SpoolLine>,
    streams: Streams,
    shared: Arc<Shared>,
) {
    while let Some(s) = rx.recv().await {
        let subject = streams.targets.url(&s.line).clone();
        let payload = Bytes::copy_from_slice(s.line.raw());
        let first = streams
            .js
            .publish_with_headers(
                subject.clone(),
                wire::line_headers(&s.list, &s.line),
                payload.clone(),
            )
            .await;
        let (js, shared) = (streams.js.clone(), shared.clone());
        tokio::spawn(async move {
            let headers = || wire::line_headers(&s.list, &s.line);
            let _ = publish_stored(&js, &subject, headers, &payload, Some(first), None).await;
            *shared
                .durable
                .lock()
                .expect("lock")
                .entry(s.src)
                .or_default() += 1;
            crate::failpoint::hit("cluster-spool-stored");
            shared.spool_pending.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// In-progress acks for lines in flight longer than a third of the ack wait, so long
/// fetches (retries, host delays, a long queue) are not redelivered.
async fn keep_in_progress(shared: Arc<Shared>, ack_wait: Duration) {
    let due = ack_wait / 3;
    let period = (ack_wait / 4).max(MIN_PROGRESS_PERIOD);
    loop {
        tokio::time::sleep(period).await;
        let now = Instant::now();
        let mut ackers: Vec<Arc<Acker>> = Vec::new();
        shared
            .deliveries
            .lock()
            .expect("lock")
            .touch_older(now, due, |d| ackers.push(d.acker.clone()));
        for a in ackers {
            let _ = a.ack_with(AckKind::Progress).await;
        }
    }
}

/// A partition this node holds.
struct Holding {
    revision: u64,
    /// When the write of the last renewal (or the take) was sent.
    renewed: Instant,
    /// Tells the partition's pull task to stop.
    stop: watch::Sender<bool>,
    /// The pull task (a partition is released only once it ended).
    task: tokio::task::JoinHandle<()>,
    /// Being given back since then: no longer pulled, released once drained.
    releasing: Option<Instant>,
}

/// Takes, renews and gives back partitions; runs the pull tasks.
struct Owner {
    cluster: ClusterConfig,
    clock: LeaseClock,
    shared: Arc<Shared>,
    client: async_nats::Client,
    streams: Streams,
    leases: kv::Store,
    nodes: kv::Store,
    held: BTreeMap<u32, Holding>,
    intake: tokio::sync::mpsc::Sender<Intake>,
    in_flight: Arc<Semaphore>,
    live_nodes: usize,
    lag: u64,
}

impl Owner {
    async fn run(&mut self, mut phase: watch::Receiver<Phase>) {
        let mut draining = false;
        self.beat().await;
        tokio::time::sleep(JOIN_SETTLE.min(self.clock.round())).await;
        let wake = Arc::new(tokio::sync::Notify::new());
        let watcher = tokio::spawn(watch_buckets(
            self.leases.clone(),
            self.nodes.clone(),
            wake.clone(),
        ));
        let mut next_round = Instant::now();
        loop {
            let now = *phase.borrow_and_update();
            match now {
                Phase::Release => break,
                Phase::Draining if !draining => {
                    draining = true;
                    next_round = Instant::now();
                    for h in self.held.values() {
                        let _ = h.stop.send(true);
                    }
                }
                _ => {}
            }
            if Instant::now() >= next_round {
                let started = Instant::now();
                self.round(!draining).await;
                next_round = started + self.clock.round();
            } else {
                self.release_drained().await;
            }
            let releasing = self.held.values().any(|h| h.releasing.is_some());
            let until = if releasing {
                next_round.min(Instant::now() + RELEASE_CHECK)
            } else {
                next_round
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = phase.changed() => {}
                _ = wake.notified() => {
                    // A node came or went, or a lease was given back: look again soon.
                    next_round = next_round.min(Instant::now() + WAKE_DEBOUNCE);
                }
            }
        }
        watcher.abort();
        self.release_all().await;
    }

    /// One round: heartbeat, renewals, releases, and (unless stopping) takes and give-backs.
    async fn round(&mut self, taking: bool) {
        self.beat().await;
        self.renew().await;
        self.show();
        self.release_drained().await;
        if taking {
            self.rebalance().await;
        }
        self.update_status().await;
    }

    /// This node's heartbeat: its key in the node bucket, rewritten every round.
    async fn beat(&self) {
        let id = &self.shared.node_id;
        let beat = serde_json::json!({
            "node": id,
            "pid": std::process::id(),
            "partitions": self.held.keys().collect::<Vec<_>>(),
            "ts": crate::record::now_rfc3339(),
        });
        if let Err(e) = self.nodes.put(id, beat.to_string().into()).await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
    }

    async fn renew(&mut self) {
        let id = Bytes::from(self.shared.node_id.clone());
        let leases = &self.leases;
        let renewals = self.held.iter().map(|(&p, h)| {
            let (id, rev) = (id.clone(), h.revision);
            async move {
                let sent = Instant::now();
                (p, sent, leases.update(lease_key(p), id, rev).await)
            }
        });
        let results = futures_util::future::join_all(renewals).await;
        let now = Instant::now();
        for (p, sent, r) in results {
            let Some(h) = self.held.get_mut(&p) else {
                continue;
            };
            match r {
                Ok(rev) => {
                    h.revision = rev;
                    h.renewed = sent;
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    self.lose(p, "expired on the server, or taken over by another node");
                }
                Err(e) if self.clock.lost(h.renewed, now) => {
                    tracing::debug!(partition = p, error = %e, "renewal failed");
                    self.lose(p, "not renewed in time");
                }
                Err(e) => tracing::debug!(partition = p, error = %e, "renewal failed; retrying"),
            }
        }
    }

    /// Stop consuming a partition whose lease is gone (what is in flight still finishes;
    /// its records meet any second copy in the duplicate window).
    fn lose(&mut self, p: u32, why: &str) {
        if let Some(h) = self.held.remove(&p) {
            let _ = h.stop.send(true);
            tracing::warn!(
                partition = p,
                why,
                "lease lost; no longer consuming the partition"
            );
        }
    }

    /// Give back partitions being released once their lines in flight are done (or an ack
    /// wait passed: then what is left is redelivered to the next owner, as after a crash).
    async fn release_drained(&mut self) {
        let now = Instant::now();
        let ready: Vec<u32> = self
            .held
            .iter()
            .filter(|(&p, h)| {
                h.releasing.is_some_and(|since| {
                    now.saturating_duration_since(since) >= self.cluster.ack_wait
                        || (h.task.is_finished() && self.shared.in_flight_of(p) == 0)
                })
            })
            .map(|(&p, _)| p)
            .collect();
        for p in ready {
            if let Some(h) = self.held.remove(&p) {
                let r = self
                    .leases
                    .delete_expect_revision(lease_key(p), Some(h.revision))
                    .await;
                match r {
                    Ok(()) => tracing::info!(partition = p, "partition given back"),
                    Err(e) => {
                        tracing::debug!(partition = p, error = %e, "release failed; the lease expires")
                    }
                }
            }
        }
    }

    /// Take free partitions up to the fair share; give back extras.
    async fn rebalance(&mut self) {
        match count_keys(&self.nodes).await {
            Ok(n) => self.live_nodes = n.max(1),
            Err(e) => {
                tracing::debug!(error = %e, "cannot list nodes");
                return;
            }
        }
        let leased = match keys(&self.leases).await {
            Ok(k) => k.iter().filter_map(|k| lease_partition(k)).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "cannot list leases");
                return;
            }
        };
        let view = View {
            partitions: self.streams.partitions,
            live_nodes: self.live_nodes,
            leased,
            held: self
                .held
                .iter()
                .filter(|(_, h)| h.releasing.is_none())
                .map(|(&p, _)| p)
                .collect(),
            releasing: self
                .held
                .iter()
                .filter(|(_, h)| h.releasing.is_some())
                .map(|(&p, _)| p)
                .collect(),
        };
        let plan = lease::plan(&self.shared.node_id, &view);
        let now = Instant::now();
        for p in plan.give_back {
            if let Some(h) = self.held.get_mut(&p) {
                let _ = h.stop.send(true);
                h.releasing = Some(now);
                tracing::info!(
                    partition = p,
                    nodes = self.live_nodes,
                    "giving partition back"
                );
            }
        }
        let mut taken = 0;
        for p in plan.candidates {
            if taken == plan.want {
                break;
            }
            let sent = Instant::now();
            let id = Bytes::from(self.shared.node_id.clone());
            if let Ok(revision) = self.leases.create(lease_key(p), id).await {
                match self.consume(p).await {
                    Ok((stop, task)) => {
                        self.held.insert(
                            p,
                            Holding {
                                revision,
                                renewed: sent,
                                stop,
                                task,
                                releasing: None,
                            },
                        );
                        taken += 1;
                        tracing::info!(partition = p, "partition taken");
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "cannot consume partition; giving it back");
                        let _ = self
                            .leases
                            .delete_expect_revision(lease_key(p), Some(revision))
                            .await;
                    }
                }
            }
        }
    }

    /// Start pulling partition `p` on its durable consumer; returns its stop switch and task.
    async fn consume(
        &self,
        p: u32,
    ) -> Result<(watch::Sender<bool>, tokio::task::JoinHandle<()>), ClusterError> {
        let name = lease_key(p);
        let stream = self.streams.url_stream(p);
        let js_stream = self
            .streams
            .js
            .get_stream(&stream)
            .await
            .map_err(|e| ClusterError::js(format!("stream {stream}"), e))?;
        let config = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("ringcrawl partition {p}")),
            filter_subject: self.streams.subjects.url(p),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.cluster.ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let consumer_err = |e| ClusterError::js(format!("consumer {name}"), e);
        let mut consumer: PullConsumer = js_stream
            .get_or_create_consumer(&name, config.clone())
            .await
            .map_err(consumer_err)?;
        // Messages delivered and never acked come back only after the ack wait. An owner that
        // gives a partition back acks its lines before its lease goes; lines still pending
        // belong to an owner that died or lost its lease. A consumer made afresh delivers them
        // at once (the stream keeps a message until it is acked); should the old owner still
        // finish one, its record meets the new one in the duplicate window.
        let pending = consumer.cached_info().num_ack_pending;
        if pending > 0 {
            tracing::info!(
                partition = p,
                messages = pending,
                "taking over messages its last owner left unacked"
            );
            js_stream
                .delete_consumer(&name)
                .await
                .map_err(consumer_err)?;
            consumer = js_stream
                .get_or_create_consumer(&name, config)
                .await
                .map_err(consumer_err)?;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(pull(
            p,
            consumer,
            self.shared.clone(),
            self.in_flight.clone(),
            self.intake.clone(),
            stop_rx,
        ));
        Ok((stop_tx, task))
    }

    async fn update_status(&mut self) {
        // The lag: the messages of each held partition's stream (one info request each).
        let infos = self.held.keys().map(|&p| {
            let (js, name) = (self.streams.js.clone(), self.streams.url_stream(p));
            async move {
                let s = js.get_stream(&name).await.ok()?;
                Some(s.cached_info().state.messages)
            }
        });
        let counts = futures_util::future::join_all(infos).await;
        if counts.iter().all(Option::is_some) {
            self.lag = counts.into_iter().flatten().sum();
        }
        self.show();
    }

    /// The status line and the metrics from what this node knows now (no request: a round
    /// without NATS may take several request timeouts, and a lost lease shows at once).
    fn show(&self) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let g = &self.shared.gauges;
        g.partitions
            .store(u64::from(self.streams.partitions), Ordering::Relaxed);
        g.held.store(self.held.len() as u64, Ordering::Relaxed);
        g.lag.store(self.lag, Ordering::Relaxed);
        g.nodes.store(self.live_nodes as u64, Ordering::Relaxed);
        g.connected.store(connected, Ordering::Relaxed);
        let status = format!(
            "cluster: node {}, {} of {} partitions held, lag {}, {} nodes, NATS {}",
            self.shared.node_id,
            self.held.len(),
            self.streams.partitions,
            self.lag,
            self.live_nodes,
            if connected {
                "connected"
            } else {
                "disconnected"
            }
        );
        *self.shared.status.lock().expect("lock") = status;
    }

    /// The stop: nak the lines left without a record (the next owner gets them at once),
    /// delete every lease and the heartbeat, and flush.
    async fn release_all(&mut self) {
        let left = self.shared.deliveries.lock().expect("lock").drain();
        for d in &left {
            let _ = d.acker.ack_with(AckKind::Nak(None)).await;
        }
        let held = std::mem::take(&mut self.held);
        let releases = held.iter().map(|(&p, h)| {
            let _ = h.stop.send(true);
            self.leases
                .delete_expect_revision(lease_key(p), Some(h.revision))
        });
        futures_util::future::join_all(releases).await;
        let _ = self.nodes.delete(&self.shared.node_id).await;
        let _ = tokio::time::timeout(STOP_FLUSH, self.client.flush()).await;
        tracing::info!(
            partitions = held.len(),
            naked = left.len(),
            "leases released"
        );
    }
}

/// Wake the owner when a node appears or leaves (node bucket) or a lease is given back (lease
/// bucket), so partitions move within a moment rather than at the next round. Expiries make
/// no event; the rounds see them.
async fn watch_buckets(leases: kv::Store, nodes: kv::Store, wake: Arc<tokio::sync::Notify>) {
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let (l, n) = match (leases.watch_all().await, nodes.watch_all().await) {
            (Ok(l), Ok(n)) => (l, n),
            _ => {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let mut events = futures_util::stream::select(l.map(|e| (true, e)), n.map(|e| (false, e)));
        while let Some((lease, Ok(e))) = events.next().await {
            let gone = matches!(e.operation, kv::Operation::Delete | kv::Operation::Purge);
            let news = match (lease, gone) {
                (true, gone) => gone,
                (false, true) => {
                    known.remove(&e.key);
                    true
                }
                (false, false) => known.insert(e.key),
            };
            if news {
                wake.notify_one();
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The live keys of a bucket, each once.
async fn keys(store: &kv::Store) -> Result<std::collections::BTreeSet<String>, String> {
    let mut k = store.keys().await.map_err(|e| e.to_string())?;
    // A set: the listing runs until the server has delivered everything, and a key written
    // while it runs (another node's heartbeat) comes a second time. Counted twice, one
    // node too many made every node's fair share too small, and they gave partitions back
    // in the middle of a crawl.
    let mut out = std::collections::BTreeSet::new();
    while let Some(key) = k.next().await {
        out.insert(key.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

async fn count_keys(store: &kv::Store) -> Result<usize, String> {
    keys(store).await.map(|k| k.len())
}

/// Pull partition `p` until told to stop, one pull request at a time, each for up to
/// [`PULL_BATCH`] lines and held by the server up to [`PULL_WAIT`]: lines are fed as the
/// server delivers them (a line stored in an idle partition at once, not after a polling
/// pause), and the next request goes as soon as a batch is complete. Every
/// message of a pull is taken (tracked with a permit of the node's in-flight bound, handed to
/// the feeder), however long that takes, even after the stop, so no message is ever left
/// delivered to this client and unseen (it would wait an ack wait before anyone got it).
async fn pull(
    p: u32,
    consumer: PullConsumer,
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    intake: tokio::sync::mpsc::Sender<Intake>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let batch = consumer
            .batch()
            .max_messages(PULL_BATCH)
            .expires(PULL_WAIT)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(partition = p, error = %e, "pull failed");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        // The server forgets a pull at its expiry but may not say so (seen with nats-server
        // 2.9: no 408, and the client would wait its own 5 s more); past the expiry it
        // delivers nothing to it, so the pull ends here then (messages already received are
        // still taken: the timeout looks at them first).
        let until = tokio::time::Instant::now() + PULL_WAIT + PULL_WAIT_SLACK;
        loop {
            let next = match tokio::time::timeout_at(until, batch.next()).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => break,
            };
            let m = match next {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(partition = p, error = %e, "pull interrupted");
                    break;
                }
            };
            let (message, acker) = m.split();
            let (list, lines) = match chunk::decode(message.headers.as_ref(), &message.payload) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "dropping a message that is not a URL line");
                    let _ = acker.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            // One permit per line (a chunk of another version's size: as many as ours).
            let n = lines.len().clamp(1, chunk::MAX_CHUNK_LINES) as u32;
            let permits = in_flight
                .clone()
                .acquire_many_owned(n)
                .await
                .expect("the semaphore is never closed");
            let keys = lines.iter().map(|l| (list.clone(), l.number)).collect();
            let d = Delivery {
                acker: Arc::new(acker),
                _permits: permits,
            };
            let empty = shared
                .deliveries
                .lock()
                .expect("lock")
                .deliver(p, keys, d, Instant::now());
            if let Some(d) = empty {
                let _ = d.acker.ack_with(AckKind::Term).await;
            }
            let first = (list.clone(), lines[0].number);
            if intake.send(Intake::Lines(lines, list)).await.is_err() {
                shared.refuse(&first, AckKind::Nak(None)).await;
            }
        }
    }
}
