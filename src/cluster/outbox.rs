//! A node's records on their way into the records stream, each until stored. A record is a
//! plain publish whose reply subject is one of the node's (`INBOX.rec.TOKEN`, one wildcard
//! subscription for all), and its PubAck is matched by the token: none of the client's
//! per-publish request machinery (an inbox string and a map entry in the client, a timer and
//! a oneshot per publish, a PubAck parsed through an untagged enum), which cost a node more
//! than the rest of a record's way. A record without its PubAck in [`API_TIMEOUT`] is sent
//! again (same `Nats-Msg-Id`, so a copy the stream stored is dropped as a duplicate), as is one
//! whose reply is an error, after a pause that doubles up to [`RETRY_MAX`].

use std::sync::Arc;
use std::time::Instant;

use async_nats::{Client, Message, Subject};
use bytes::Bytes;

use super::submit::{RETRY_MAX, RETRY_START};
use super::wire;
use super::API_TIMEOUT;
use crate::sched::HostMap;

/// A record sent and not yet stored.
pub(super) struct Out {
    pub list: Arc<str>,
    pub line: u64,
    payload: Bytes,
    /// Sent then (a PubAck due by then plus [`API_TIMEOUT`]), or to be sent again then.
    at: Instant,
    /// The pause before the next send after a failed one.
    pause: std::time::Duration,
}

/// The records in flight, by reply token.
pub(super) struct Outbox {
    client: Client,
    subject: Subject,
    /// `INBOX.rec.`: a token appended makes a record's reply subject.
    prefix: String,
    next: u64,
    pending: HostMap<u64, Out>,
    /// Records whose send failed, each sent again at its `at`.
    retry: Vec<Out>,
}

/// The part of a PubAck looked at: a stored message has a sequence number, a failure an
/// `error` and none.
#[derive(serde::Deserialize)]
struct Reply {
    seq: u64,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// Whether a reply is a PubAck of a stored message (a duplicate is stored too); not a
/// JetStream error, nor a status such as 503 "no responders".
fn stored(m: &Message) -> bool {
    m.status.is_none()
        && serde_json::from_slice::<Reply>(&m.payload).is_ok_and(|r| r.seq > 0 && r.error.is_none())
}

impl Outbox {
    /// The subject to subscribe to for the replies is [`Outbox::replies`].
    pub fn new(client: Client, subject: Subject) -> Outbox {
        let prefix = format!("{}.rec.", client.new_inbox());
        Outbox {
            client,
            subject,
            prefix,
            next: 0,
            pending: HostMap::default(),
            retry: Vec::new(),
        }
    }

    /// The wildcard subject of every reply.
    pub fn replies(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// Records sent and not yet stored (or waiting to be sent again).
    pub fn len(&self) -> usize {
        self.pending.len() + self.retry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Send a record (its payload: the journal line without `\n`).
    pub async fn send(&mut self, list: Arc<str>, line: u64, payload: Bytes) {
        let out = Out {
            list,
            line,
            payload,
            at: Instant::now(),
            pause: RETRY_START,
        };
        self.publish(out).await;
    }

    async fn publish(&mut self, mut out: Out) {
        let token = self.next;
        self.next += 1;
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(token);
        let mut reply = String::with_capacity(self.prefix.len() + digits.len());
        reply.push_str(&self.prefix);
        reply.push_str(digits);
        let sent = self
            .client
            .publish_with_reply_and_headers(
                self.subject.clone(),
                Subject::from(reply),
                wire::record_headers(&out.list, out.line),
                out.payload.clone(),
            )
            .await;
        if let Err(e) = sent {
            // No PubAck will come: the timeout sends it again.
            tracing::debug!(list = &*out.list, line = out.line, error = %e, "record not sent");
        }
        out.at = Instant::now();
        self.pending.insert(token, out);
    }

    /// A reply: the record it stored, if it is a PubAck of one of ours (an error reply puts the
    /// record among those sent again after a pause; a late reply to a record already sent
    /// again is dropped).
    pub fn reply(&mut self, m: &Message) -> Option<Out> {
        let token: u64 = m
            .subject
            .as_str()
            .strip_prefix(&*self.prefix)?
            .parse()
            .ok()?;
        let mut out = self.pending.remove(&token)?;
        if stored(m) {
            return Some(out);
        }
        tracing::debug!(
            list = &*out.list,
            line = out.line,
            status = ?m.status,
            reply = %String::from_utf8_lossy(&m.payload),
            "record not stored; sending it again"
        );
        out.at = Instant::now() + out.pause;
        out.pause = (out.pause * 2).min(RETRY_MAX);
        self.retry.push(out);
        None
    }

    /// Send again the records whose PubAck did not come in time and those whose pause is over.
    pub async fn resend_due(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.at) >= API_TIMEOUT)
            .map(|(&t, _)| t)
            .collect();
        let mut due: Vec<Out> = late
            .into_iter()
            .filter_map(|t| self.pending.remove(&t))
            .collect();
        let (now_due, later): (Vec<Out>, Vec<Out>) = std::mem::take(&mut self.retry)
            .into_iter()
            .partition(|o| o.at <= now);
        self.retry = later;
        due.extend(now_due);
        for out in due {
            self.publish(out).await;
        }
    }
}
