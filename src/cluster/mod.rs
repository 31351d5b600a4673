//! The cluster: several daemons share one crawl through NATS JetStream (see ARCHITECTURE.md,
//! "Cluster"). This module owns the connection to NATS (the `async-nats` client, on a tokio
//! runtime of its own beside the io_uring workers), the streams and buckets the nodes share,
//! and the three roles built on them:
//!
//! - `submit` (`ringcrawl submit --nats`, and a node's spool intake): every line of a list to
//!   its partition's URL stream (one stream and subject per partition), with its list id and
//!   line number, in chunks of several lines of one partition (`chunk`; the spool intake sends
//!   one line per message), then waits for the PubAcks.
//! - `node` (`ringcrawl run` with `[cluster]`): takes its fair share of partitions with
//!   leases in a key-value bucket, consumes them through one durable pull consumer each, feeds
//!   every line to the engine, publishes every record to the records stream (`outbox`: plain
//!   publishes, their PubAcks matched on a reply subject of the node's), and acks the line
//!   after the record's PubAck.
//! - `collect` (`ringcrawl collect`): appends the records stream to a JSON Lines file, one
//!   line per submitted line.
//!
//! What the messages hold and where they go is sans-IO in `wire` and `chunk`; a node's
//! deliveries until acked in `inflight`; lease decisions in `lease`; collect's
//! de-duplication in `dedup`.

mod chunk;
mod collect;
mod dedup;
mod inflight;
mod lease;
mod node;
mod outbox;
mod submit;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, ConnectOptions, ServerAddr};
use futures_util::{StreamExt, TryStreamExt};

use crate::config::ClusterConfig;
use wire::{Subjects, Targets};

pub(crate) use collect::{collect, CollectArgs};
pub(crate) use node::run;
pub(crate) use submit::submit;

/// Largest URL message: a kept line (8 KiB and a byte) and room for headers.
pub const MAX_URL_MESSAGE: i32 = 16 * 1024;
/// Largest record message (a record holds a URL, a final URL and a title of at most 4 KiB
/// each, and a bounded error message).
pub const MAX_RECORD_MESSAGE: i32 = 64 * 1024;
/// How long a JetStream API request (stream info, consumer create, key-value operation) may
/// take before it fails and is retried.
pub const API_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take when a command (`submit`, `collect`) starts.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Streams looked up (or created) at once when the URL streams are opened.
pub const OPEN_AT_ONCE: usize = 32;
/// PubAcks awaited at once by one client.
pub const MAX_ACKS_IN_FLIGHT: usize = 8192;

/// A cluster failure (one line, its cause inline).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    #[error("cannot connect to NATS at {servers}: {cause}")]
    Connect { servers: String, cause: String },
    #[error("bad NATS server URL {url}: {cause}")]
    Url { url: String, cause: String },
    #[error("cannot read the NATS credentials file {path}: {cause}")]
    Credentials {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("JetStream {what}: {cause}")]
    JetStream { what: String, cause: String },
    #[error("cannot read {path}: {cause}")]
    Input {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write {path}: {cause}")]
    Output {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot queue line {line} of {path}: {cause}")]
    Publish {
        path: PathBuf,
        line: u64,
        cause: String,
    },
    #[error("cannot start the NATS client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot watch for SIGTERM and SIGINT: {0}")]
    Signals(std::io::Error),
}

impl ClusterError {
    fn js(what: impl Into<String>, cause: impl std::fmt::Display) -> ClusterError {
        ClusterError::JetStream {
            what: what.into(),
            cause: cause.to_string(),
        }
    }
}

/// The tokio runtime the NATS client runs on (current-thread: one core's worth of work is far
/// more than the client needs).
fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClusterError::Runtime)
}

/// Connection options from the configuration: a name, the credentials file, the TLS CA,
/// unlimited reconnects (a node waits out an outage), and connection events in the log.
async fn connect_options(cfg: &ClusterConfig, name: &str) -> Result<ConnectOptions, ClusterError> {
    // A client error (a failed reconnect attempt) is said once until the next connection; the
    // attempts after it go to the debug level, so a long outage is not a line a second.
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut opts = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(API_TIMEOUT))
        .event_callback(move |event| {
            let failing = failing.clone();
            async move {
                use std::sync::atomic::Ordering::Relaxed;
                match event {
                    async_nats::Event::Connected => {
                        failing.store(false, Relaxed);
                        tracing::info!("NATS: connected")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS: disconnected; reconnecting")
                    }
                    e @ async_nats::Event::ClientError(_) if failing.swap(true, Relaxed) => {
                        tracing::debug!("NATS: {e}")
                    }
                    e @ async_nats::Event::ClientError(_) => {
                        tracing::warn!("NATS: {e}; retrying (quietly until connected)")
                    }
                    other => tracing::warn!("NATS: {other}"),
                }
            }
        });
    if let Some(path) = &cfg.credentials {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|cause| ClusterError::Credentials {
                path: path.clone(),
                cause,
            })?;
    }
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    Ok(opts)
}

fn server_addrs(cfg: &ClusterConfig) -> Result<Vec<ServerAddr>, ClusterError> {
    cfg.servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>().map_err(|e| ClusterError::Url {
                url: s.clone(),
                cause: e.to_string(),
            })
        })
        .collect()
}

/// Connect now (a command: fails when no server answers).
async fn connect(cfg: &ClusterConfig, name: &str) -> Result<Client, ClusterError> {
    let opts = connect_options(cfg, name).await?;
    let addrs = server_addrs(cfg)?;
    opts.connect(addrs)
        .await
        .map_err(|e| ClusterError::Connect {
            servers: cfg.servers.join(","),
            cause: connect_cause(&e),
        })
}

/// Why a connection failed, each cause once: the client's kind of failure, then its source
/// unless the source already says it (a refused login comes as the kind "authorization
/// violation" with the server's "nats: authorization violation") or the kind says nothing
/// more than "IO error" (a refused connection, a certificate not trusted).
fn connect_cause(e: &async_nats::ConnectError) -> String {
    let kind = e.kind().to_string();
    match std::error::Error::source(e).map(|s| s.to_string()) {
        Some(s) if s.to_lowercase().contains(&kind.to_lowercase()) => {
            s.strip_prefix("nats: ").unwrap_or(&s).to_string()
        }
        Some(s) if e.kind() == async_nats::ConnectErrorKind::Io => s,
        Some(s) => format!("{kind}: {s}"),
        None => kind,
    }
}

/// A JetStream context whose PubAcks in flight are bounded by [`MAX_ACKS_IN_FLIGHT`].
fn jetstream(client: Client) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .timeout(API_TIMEOUT)
        .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
        .build(client)
}

/// The streams of one crawl, as found (or created) on the server.
#[derive(Clone)]
struct Streams {
    js: jetstream::Context,
    subjects: Subjects,
    /// The subjects published to, one per partition and the records'.
    targets: Targets,
    /// Partitions of the crawl (the URL streams': fixed when they were created).
    partitions: u32,
    /// The URL streams' name prefix: partition `p`'s stream is `PREFIX-p`.
    url_stream: String,
    records_stream: String,
}

/// Partition `p`'s URL stream: one stream per partition, because nats-server 2.9 finds a
/// filtered consumer's next message by stepping over the other subjects' messages, so P
/// partitions sharing one stream would cost every line P steps on the server.
fn url_stream_name(prefix: &str, p: u32) -> String {
    format!("{prefix}-{p}")
}

/// What partition 0's stream says of the crawl's partition count (its description).
const PARTITIONS_OF: &str = " of ";

/// Partition `p`'s URL stream configuration: its one subject, work-queue retention (a line
/// leaves the stream when its node acks it), explicit duplicate window. The description
/// carries the partition count (`... partition P of N ...`), read back by [`Streams::open`].
fn url_stream_config(
    cfg: &ClusterConfig,
    subjects: &Subjects,
    p: u32,
    partitions: u32,
) -> stream::Config {
    stream::Config {
        name: url_stream_name(&cfg.url_stream, p),
        description: Some(format!(
            "ringcrawl URL lines, partition {p}{PARTITIONS_OF}{partitions} (by host)"
        )),
        subjects: vec![subjects.url(p)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        duplicate_window: cfg.duplicate_window,
        max_message_size: MAX_URL_MESSAGE,
        ..Default::default()
    }
}

/// The partition count a partition stream's description states.
fn partitions_stated(description: &str) -> Option<u32> {
    let (_, rest) = description.split_once(PARTITIONS_OF)?;
    let n: u32 = rest.split(' ').next()?.parse().ok()?;
    (n > 0).then_some(n)
}

/// The records stream's configuration: one subject, limits retention (kept for
/// `records_max_age`), explicit duplicate window.
fn records_stream_config(cfg: &ClusterConfig, subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: cfg.records_stream.clone(),
        description: Some("ringcrawl records, one per URL line".to_string()),
        subjects: vec![subjects.records()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: cfg.duplicate_window,
        max_age: cfg.records_max_age.unwrap_or_default(),
        max_message_size: MAX_RECORD_MESSAGE,
        ..Default::default()
    }
}

/// Get a stream, or create it when it does not exist (a second creator racing us finds it).
async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, ClusterError> {
    let name = config.name.clone();
    if let Ok(s) = js.get_stream(&name).await {
        return Ok(s);
    }
    match js.create_stream(config).await {
        Ok(s) => Ok(s),
        Err(create) => js
            .get_stream(&name)
            .await
            .map_err(|_| ClusterError::js(format!("stream {name}"), create)),
    }
}

impl Streams {
    /// Partition `p`'s URL stream.
    fn url_stream(&self, p: u32) -> String {
        url_stream_name(&self.url_stream, p)
    }

    /// Find or create the streams. The partition count is the one partition 0's stream was
    /// created with; the other partitions' streams are created when missing (a creator that
    /// stopped half-way, or one racing us).
    async fn open(js: jetstream::Context, cfg: &ClusterConfig) -> Result<Streams, ClusterError> {
        let subjects = Subjects::new(&cfg.subject_prefix);
        let first = url_stream_name(&cfg.url_stream, 0);
        // The stream as the get (or create) returned it: no second request for its info.
        let s0 = ensure_stream(&js, url_stream_config(cfg, &subjects, 0, cfg.partitions)).await?;
        let info = s0.cached_info();
        let partitions = info
            .config
            .description
            .as_deref()
            .and_then(partitions_stated)
            .filter(|_| info.config.subjects == [subjects.url(0)])
            .ok_or_else(|| {
                ClusterError::js(
                    format!("stream {first}"),
                    format!(
                        "not a ringcrawl URL stream (subjects {:?}, description {:?})",
                        info.config.subjects, info.config.description
                    ),
                )
            })?;
        if partitions != cfg.partitions {
            tracing::info!(
                stream = cfg.url_stream,
                partitions,
                configured = cfg.partitions,
                "the URL streams keep the partition count they were created with"
            );
        }
        futures_util::stream::iter(1..partitions)
            .map(|p| ensure_stream(&js, url_stream_config(cfg, &subjects, p, partitions)))
            .buffer_unordered(OPEN_AT_ONCE)
            .try_collect::<Vec<_>>()
            .await?;
        ensure_stream(&js, records_stream_config(cfg, &subjects)).await?;
        Ok(Streams {
            js,
            targets: Targets::new(&subjects, partitions),
            subjects,
            partitions,
            url_stream: cfg.url_stream.clone(),
            records_stream: cfg.records_stream.clone(),
        })
    }
}

/// Get a key-value bucket, or create it (history 1, entries expire after `max_age`). The
/// bucket's own max age is returned: it is the lease time every node goes by.
///
/// The bucket's stream is created here with the layout the key-value API gives it
/// (`KV_NAME` on `$KV.NAME.>`, one message per key, rollups, direct gets), because the
/// client's `create_key_value` first reads the account's limits, whose reply from a 2.9
/// server lacks fields the client requires.
async fn ensure_bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    description: &str,
) -> Result<(kv::Store, Duration), ClusterError> {
    let what = || format!("bucket {name}");
    let config = stream::Config {
        name: format!("KV_{name}"),
        description: Some(description.to_string()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    let age = ensure_stream(js, config)
        .await?
        .cached_info()
        .config
        .max_age;
    if age.is_zero() {
        return Err(ClusterError::js(
            what(),
            "has no max age: leases and heartbeats would never expire",
        ));
    }
    let store = js
        .get_key_value(name)
        .await
        .map_err(|e| ClusterError::js(what(), e))?;
    Ok((store, age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_failure_says_each_cause_once() {
        use async_nats::{ConnectError, ConnectErrorKind as K};
        let refused =
            ConnectError::with_source(K::AuthorizationViolation, "nats: authorization violation");
        assert_eq!(connect_cause(&refused), "authorization violation");
        let tls = ConnectError::with_source(K::Tls, "invalid peer certificate: UnknownIssuer");
        assert_eq!(
            connect_cause(&tls),
            "TLS error: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(connect_cause(&ConnectError::new(K::TimedOut)), "timed out");
        let untrusted = ConnectError::with_source(K::Io, "invalid peer certificate: UnknownIssuer");
        assert_eq!(
            connect_cause(&untrusted),
            "invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn a_partition_streams_description_states_the_partition_count() {
        let cfg = ClusterConfig::default();
        let subjects = Subjects::new(&cfg.subject_prefix);
        let c = url_stream_config(&cfg, &subjects, 3, 64);
        assert_eq!(c.name, format!("{}-3", cfg.url_stream));
        assert_eq!(c.subjects, [subjects.url(3)]);
        assert_eq!(
            partitions_stated(c.description.as_deref().unwrap()),
            Some(64)
        );
        for bad in [
            "",
            "partition 0",
            "partition 0 of x",
            "partition 0 of 0 (by host)",
        ] {
            assert_eq!(partitions_stated(bad), None, "{bad:?}");
        }
    }
}
