//! `ringcrawl collect`: append the records stream to a JSON Lines file, exactly one line per
//! submitted line, through a durable pull consumer (run again, it continues where it
//! stopped; the consumer is the output file's own unless `--consumer` names one). The file
//! is opened with its torn tail cut (`journal::open_journal`) and scanned once into
//! `dedup::Seen`; each batch of records is de-duplicated against it, written and
//! fsync'd, and only then acked. So a record published twice is written once, a crash after
//! the write and before the ack redelivers records the file already holds (skipped), and a
//! crash inside the write leaves a torn line that the next run cuts before it receives the
//! unacked records again. The consumer acks all (one ack, the batch's last record, covers the
//! batch written before it), so one `collect` at a time per consumer name. Without
//! `--follow` it exits once the consumer has nothing pending and nothing unacked, and counts
//! the URL messages the cluster still holds (a crawl not over yet); with `--wait` it exits
//! only once those are gone too (every submitted line has its record: a node acks a line's
//! URL message after its record is stored), then caught up again. With `--follow` it pulls
//! continuously and writes what arrived together, until SIGTERM or SIGINT.

use std::collections::HashSet;
use std::io::{BufReader, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::{StreamExt, TryStreamExt};
use tokio::signal::unix::{signal, SignalKind};

use super::dedup::{record_key, Seen};
use super::{wire, ClusterError, Streams};
use crate::config::ClusterConfig;
use crate::journal::open_journal;

/// Records fetched (and written, and acked) at once.
pub const COLLECT_BATCH: usize = 2048;
/// With `--follow`: after a record arrived, how long to wait for more before writing the batch.
pub const FOLLOW_GATHER: Duration = Duration::from_millis(5);
/// With `--follow`: idle heartbeat of the pull (a lost connection shows within two).
pub const FOLLOW_HEARTBEAT: Duration = Duration::from_secs(5);
/// With `--follow`: the pause before pulling again after the pull failed.
pub const FOLLOW_RETRY: Duration = Duration::from_secs(1);
/// When caught up except for records handed out earlier and not acked (a collect that died),
/// how long to wait before asking again (they come back after the consumer's ack wait).
pub const UNACKED_POLL: Duration = Duration::from_millis(100);
/// The collect consumer's ack wait: records written but not acked come back after it.
pub const COLLECT_ACK_WAIT: Duration = Duration::from_secs(30);
/// With `--wait`: the pause between looks at the URL streams while lines are still queued.
pub const WAIT_POLL: Duration = Duration::from_millis(250);

/// What `collect` was asked to do.
#[derive(Debug)]
pub(crate) struct CollectArgs {
    pub output: PathBuf,
    pub follow: bool,
    /// Exit only once every URL stream is empty (the crawl is over) and every record is in.
    pub wait: bool,
    /// The durable consumer; `None`: the output file's own ([`file_consumer`]).
    pub consumer: Option<String>,
}

/// What one run did.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub written: u64,
    pub duplicates: u64,
    /// Distinct records the file holds now.
    pub total: u64,
    /// Bytes of a torn last line cut at start.
    pub torn: u64,
    /// URL messages (chunks of lines) still in the URL streams when it stopped: lines not
    /// crawled yet, or whose record is not stored yet. Not counted with `--follow`.
    pub queued: u64,
}

/// The messages every URL stream of the crawl holds now (work-queue streams: a message leaves
/// when its node acks it, after the records of its lines are stored). From the account's
/// stream list (one request per 256 streams), not an info request per partition: `--wait`
/// asks every [`WAIT_POLL`].
async fn queued(streams: &Streams) -> Result<u64, ClusterError> {
    let ours: HashSet<String> = (0..streams.partitions)
        .map(|p| streams.url_stream(p))
        .collect();
    streams
        .js
        .streams()
        .map_err(|e| ClusterError::js("the stream list", e))
        .try_fold(0, |sum, info| {
            let n = if ours.contains(&info.config.name) {
                info.state.messages
            } else {
                0
            };
            async move { Ok(sum + n) }
        })
        .await
}

/// With `--follow`: the next records as they come: wait for one, then take what follows
/// within [`FOLLOW_GATHER`] of the last, up to [`COLLECT_BATCH`].
async fn gather(s: &mut pull::Stream) -> Result<Vec<jetstream::Message>, String> {
    let first = match s.next().await {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("the pull ended".into()),
    };
    let mut out = vec![first];
    while out.len() < COLLECT_BATCH {
        match tokio::time::timeout(FOLLOW_GATHER, s.next()).await {
            Ok(Some(Ok(m))) => out.push(m),
            _ => break,
        }
    }
    Ok(out)
}

/// The durable consumer of an output file: `collect-` and 16 hex digits of FNV-1a of the
/// file's absolute path (symbolic links resolved), so every file has its own place in the
/// records stream: collecting into a second file starts it from the first record, whatever
/// the first file took. A file moved gets a new consumer, which reads the stream from the
/// start; what the file holds already is skipped.
pub(crate) fn file_consumer(canonical: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!(
        "collect-{:016x}",
        wire::fnv1a(canonical.as_os_str().as_bytes())
    )
}

/// Run `collect` (blocks; with `follow`, until the process is stopped).
pub(crate) fn collect(cfg: &ClusterConfig, args: &CollectArgs) -> Result<Collected, ClusterError> {
    let out_err = |cause| ClusterError::Output {
        path: args.output.clone(),
        cause,
    };
    let (mut file, torn) = open_journal(&args.output).map_err(|e| ClusterError::Output {
        path: args.output.clone(),
        cause: std::io::Error::other(e.to_string()),
    })?;
    file.rewind().map_err(out_err)?;
    let mut seen = Seen::scan(BufReader::new(&file)).map_err(out_err)?;
    let consumer_name = match &args.consumer {
        Some(name) => name.clone(),
        None => file_consumer(&args.output.canonicalize().map_err(out_err)?),
    };
    let mut done = Collected {
        torn,
        ..Collected::default()
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = super::connect(cfg, "ringcrawl collect").await?;
        let streams = Streams::open(super::jetstream(client.clone()), cfg).await?;
        let what = format!("consumer {consumer_name} on {}", streams.records_stream);
        let stream = streams
            .js
            .get_stream(&streams.records_stream)
            .await
            .map_err(|e| ClusterError::js(&what, e))?;
        let consumer = stream
            .get_or_create_consumer(
                &consumer_name,
                pull::Config {
                    durable_name: Some(consumer_name.clone()),
                    description: Some("ringcrawl collect".into()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::All,
                    ack_wait: COLLECT_ACK_WAIT,
                    max_ack_pending: (COLLECT_BATCH * 2) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ClusterError::js(&what, e))?;
        // With AckPolicy::All (what this command creates) the last record of a batch acks the
        // whole batch; a consumer made with explicit acks gets one ack per record.
        let ack_all = consumer.cached_info().config.ack_policy == AckPolicy::All;
        let mut follow = None;
        // With --follow, SIGTERM or SIGINT ends the run between batches (exit 0): records
        // pulled and not yet written are not acked and come to the next run.
        let mut stops = if args.follow {
            let watch = |kind| signal(kind).map_err(ClusterError::Signals);
            Some((
                watch(SignalKind::terminate())?,
                watch(SignalKind::interrupt())?,
            ))
        } else {
            None
        };
        let mut buf = Vec::with_capacity(1 << 20);
        // With --wait: the URL streams were seen empty; what follows is the last drain.
        let mut crawl_over = false;
        loop {
            let messages = if let Some((term, int)) = stops.as_mut() {
                let s = match follow.as_mut() {
                    Some(s) => s,
                    None => follow.insert(
                        consumer
                            .stream()
                            .max_messages_per_batch(COLLECT_BATCH)
                            .heartbeat(FOLLOW_HEARTBEAT)
                            .messages()
                            .await
                            .map_err(|e| ClusterError::js(&what, e))?,
                    ),
                };
                let gathered = tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    g = gather(s) => g,
                };
                match gathered {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "collect: pulling again");
                        follow = None;
                        tokio::time::sleep(FOLLOW_RETRY).await;
                        continue;
                    }
                }
            } else {
                let batch = consumer
                    .fetch()
                    .max_messages(COLLECT_BATCH)
                    .messages()
                    .await
                    .map_err(|e| ClusterError::js(&what, e))?;
                batch.filter_map(|m| async move { m.ok() }).collect().await
            };
            buf.clear();
            for m in &messages {
                let key = match wire::keys(m.headers.as_ref()) {
                    Ok((list, line)) => Some((list.to_string(), line)),
                    Err(_) => record_key(&m.payload),
                };
                let Some((list, line)) = key else {
                    tracing::warn!(subject = %m.subject, "skipping a message that is not a record");
                    continue;
                };
                if seen.admit(&list, line) {
                    buf.extend_from_slice(&m.payload);
                    buf.push(b'\n');
                    done.written += 1;
                } else {
                    done.duplicates += 1;
                }
            }
            if !buf.is_empty() {
                file.write_all(&buf).map_err(out_err)?;
                file.sync_data().map_err(out_err)?;
            }
            // After the write: a lost ack only brings records back, and `seen` skips them.
            if ack_all {
                if let Some(last) = messages.last() {
                    let _ = last.ack().await;
                }
            } else {
                for m in &messages {
                    let _ = m.ack().await;
                }
            }
            if !messages.is_empty() || args.follow {
                continue;
            }
            // The acks reach the server before it is asked how far this consumer got.
            let _ = client.flush().await;
            let info = consumer
                .get_info()
                .await
                .map_err(|e| ClusterError::js(&what, e))?;
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                if !args.wait {
                    done.queued = queued(&streams).await?;
                    break;
                }
                if crawl_over {
                    break;
                }
                // Every record of a line is stored before its URL message is acked, so once
                // the URL streams are empty one more drain brings the last records.
                if queued(&streams).await? == 0 {
                    crawl_over = true;
                } else {
                    tokio::time::sleep(WAIT_POLL).await;
                }
                continue;
            }
            if info.num_pending == 0 {
                tokio::time::sleep(UNACKED_POLL).await;
            }
        }
        client
            .flush()
            .await
            .map_err(|e| ClusterError::js("flush", e))?;
        Ok::<(), ClusterError>(())
    })?;
    done.total = seen.len();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_output_file_has_its_own_consumer() {
        let a = file_consumer(std::path::Path::new("/var/lib/ringcrawl/titles.jsonl"));
        let b = file_consumer(std::path::Path::new("/var/lib/ringcrawl/other.jsonl"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            file_consumer(std::path::Path::new("/var/lib/ringcrawl/titles.jsonl"))
        );
        // A valid durable name: no `.`, `*`, `>`, whitespace or path separators.
        assert!(a.starts_with("collect-") && a.len() == "collect-".len() + 16);
        assert!(
            a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'),
            "{a}"
        );
    }
}
