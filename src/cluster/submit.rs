//! Lines into the cluster: `ringcrawl submit --nats` queues list files (or stdin) on the URL
//! streams, and [`publish_stored`] is the one "publish until the server stored it" used here
//! and by a node's spool intake. A list's lines are read by the one intake reader
//! (`intake::LineReader`: same trimming, numbering and limits as everywhere), grouped into
//! chunks of lines of one partition (`chunk::Chunker`: the same list always makes the same
//! chunks), and each chunk becomes a message on its partition's subject, sent in order with
//! up to [`SUBMIT_WINDOW`] PubAcks awaited at once. A chunk whose PubAck does not come is
//! sent again (same message id, so a copy the server had stored is dropped as a duplicate);
//! after [`SUBMIT_ATTEMPTS`] the command fails with one line.

use std::fs::File;
use std::io::{self, BufReader, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::Context;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::chunk::{Chunk, Chunker};
use super::wire;
use super::{ClusterError, Streams};
use crate::config::ClusterConfig;
use crate::intake::{LineReader, ReadLimits};

/// PubAcks one `submit` awaits at once (pipelined; below the context's bound).
pub const SUBMIT_WINDOW: usize = 4096;
/// Sends of one line before `submit` gives up.
pub const SUBMIT_ATTEMPTS: u32 = 5;
/// First wait before sending a line again; doubled each time up to [`RETRY_MAX`].
pub const RETRY_START: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Read buffer of a list.
const LIST_BUFFER: usize = 256 * 1024;
/// The list name of standard input.
const STDIN_NAME: &str = "stdin";

/// One list queued.
#[derive(Debug)]
pub(crate) struct Queued {
    pub input: PathBuf,
    pub list: String,
    /// Lines sent (non-blank).
    pub lines: u64,
    /// Lines the stream already held (the list was queued before, within the window).
    pub duplicates: u64,
}

/// Send one message and wait until the server stored it (its PubAck), sending it again after
/// a failure, with a growing pause, `attempts` times at most (`None`: until it succeeds).
/// `first` is the outcome of a send already made.
pub(super) async fn publish_stored(
    js: &Context,
    subject: &Subject,
    headers: impl Fn() -> HeaderMap,
    payload: &Bytes,
    first: Option<Result<PublishAckFuture, PublishError>>,
    attempts: Option<u32>,
) -> Result<PublishAck, String> {
    let mut sent = first;
    let mut pause = RETRY_START;
    let mut n = 0;
    loop {
        n += 1;
        let outcome = match sent.take() {
            Some(s) => s,
            None => {
                js.publish_with_headers(subject.clone(), headers(), payload.clone())
                    .await
            }
        };
        let err = match outcome {
            Ok(ack) => match ack.await {
                Ok(a) => return Ok(a),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if attempts.is_some_and(|max| n >= max) {
            return Err(err);
        }
        tracing::debug!(%subject, error = %err, "publish failed; sending again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// An input opened before anything is queued: its name and a file to read twice (digest,
/// then lines). Standard input is copied into an unlinked temporary file first.
struct Input {
    path: PathBuf,
    name: String,
    file: File,
}

fn open_inputs(inputs: &[PathBuf]) -> Result<Vec<Input>, ClusterError> {
    let mut out = Vec::new();
    for path in inputs {
        let err = |cause| ClusterError::Input {
            path: path.clone(),
            cause,
        };
        let (name, file) = if path.as_os_str() == "-" {
            let mut tmp = tempfile::tempfile().map_err(err)?;
            io::copy(&mut io::stdin().lock(), &mut tmp).map_err(err)?;
            (STDIN_NAME.to_string(), tmp)
        } else {
            let f = File::open(path).map_err(err)?;
            if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a directory",
                )));
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, f)
        };
        out.push(Input {
            path: path.clone(),
            name,
            file,
        });
    }
    Ok(out)
}

/// The list id of a file: its name and a digest of its content (read from the start; the
/// file is left at its start for the lines).
pub(super) fn list_id_of(name: &str, file: &mut File) -> io::Result<String> {
    file.rewind()?;
    let digest = wire::digest_of(BufReader::with_capacity(LIST_BUFFER, &mut *file))?;
    file.rewind()?;
    Ok(wire::list_id(name, digest.as_ref()))
}

/// `ringcrawl submit --nats`: queue every input on the cluster's URL stream (creating the
/// streams when missing), in order; all inputs are opened first, so a missing one queues
/// nothing.
pub(crate) fn submit(cfg: &ClusterConfig, inputs: &[PathBuf]) -> Result<Vec<Queued>, ClusterError> {
    let inputs = open_inputs(inputs)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = super::connect(cfg, "ringcrawl submit").await?;
        let streams = Streams::open(super::jetstream(client.clone()), cfg).await?;
        let mut queued = Vec::new();
        for input in inputs {
            queued.push(queue_one(&streams, input).await?);
        }
        client
            .flush()
            .await
            .map_err(|e| ClusterError::js("flush", e))?;
        Ok(queued)
    })
}

async fn queue_one(streams: &Streams, mut input: Input) -> Result<Queued, ClusterError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| ClusterError::Input { path, cause }
    };
    let list = list_id_of(&input.name, &mut input.file).map_err(read_err(&input.path))?;
    let js = &streams.js;
    let mut reader = LineReader::new(
        BufReader::with_capacity(LIST_BUFFER, &input.file),
        ReadLimits::default(),
    );
    let mut pending = FuturesUnordered::new();
    let mut done = Queued {
        input: input.path.clone(),
        list: list.clone(),
        lines: 0,
        duplicates: 0,
    };
    let settle = |r: Result<(PublishAck, u64), (u64, String)>, done: &mut Queued| match r {
        Ok((ack, lines)) => {
            done.lines += lines;
            if ack.duplicate {
                done.duplicates += lines;
            }
            Ok(())
        }
        Err((line, cause)) => Err(ClusterError::Publish {
            path: input.path.clone(),
            line,
            cause,
        }),
    };
    let mut chunker = Chunker::default();
    loop {
        let (chunks, end): (Vec<Chunk>, bool) = match reader.next() {
            Some(line) => {
                let line = line.map_err(|e| match e {
                    crate::intake::ReadError::Io(cause) => read_err(&input.path)(cause),
                    other => read_err(&input.path)(io::Error::other(other.to_string())),
                })?;
                (chunker.push(streams.targets.partition(&line), line), false)
            }
            None => (chunker.finish(), true),
        };
        for chunk in chunks {
            let subject = streams.targets.partition_url(chunk.partition);
            let (headers, payload) = chunk.message(&list);
            // Sent here, in order; the PubAck is awaited with the others.
            let first = js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await;
            let (number, n) = (chunk.lines[0].number, chunk.lines.len() as u64);
            pending.push(async move {
                publish_stored(
                    js,
                    subject,
                    || headers.clone(),
                    &payload,
                    Some(first),
                    Some(SUBMIT_ATTEMPTS),
                )
                .await
                .map(|ack| (ack, n))
                .map_err(|e| (number, e))
            });
            while pending.len() >= SUBMIT_WINDOW {
                if let Some(r) = pending.next().await {
                    settle(r, &mut done)?;
                }
            }
        }
        if end {
            break;
        }
    }
    while let Some(r) = pending.next().await {
        settle(r, &mut done)?;
    }
    Ok(done)
}
