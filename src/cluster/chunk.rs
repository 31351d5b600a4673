//! Sans-IO: several URL lines of one partition in one message (a chunk), so the server
//! stores, delivers, acks and deletes one message where it did one per line (those per-message
//! steps were most of the server's work per line, and a good part of a node's).
//!
//! [`Chunker`] groups a list's lines, in order, by partition and by block of [`BLOCK`] line
//! numbers, and closes a chunk at [`MAX_CHUNK_LINES`] lines or [`MAX_CHUNK_BYTES`] bytes, so
//! which lines share a chunk depends only on the list's content and the partition count: a
//! list queued again (after a crash of `submit` or of a spool intake) makes the same chunks,
//! with the same message ids, which the stream's duplicate window drops.
//!
//! A chunk of one line is the one-line message of [`wire`] (`Nats-Msg-Id: LIST:LINE`, the
//! kept bytes as payload). A chunk of several has `Nats-Msg-Id: LIST:FIRST-LAST` (its first
//! and last line numbers: two chunks with the same id hold the same lines) and a payload of
//! entries `LINE KEPT[ WHOLE]\n` + the `KEPT` kept bytes + `\n` (`WHOLE`: the whole length of
//! a cut line), in line order. [`decode`] reads both.

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;

use super::wire::{self, WireError, HDR_MSG_ID, NAME_MSG_ID};
use crate::intake::InputLine;
use crate::sched::HostMap;

/// Lines of a list whose chunks are closed together: a chunk holds lines of one block, so a
/// partition's open chunk waits at most this many lines of the list for its next line.
pub const BLOCK: u64 = 4096;
/// Lines in one chunk at most (what a redelivery fetches again, at most).
pub const MAX_CHUNK_LINES: usize = 32;
/// Payload bytes of one chunk at most (under the URL streams' message size with room for the
/// header); a longer line goes alone.
pub const MAX_CHUNK_BYTES: usize = 12 * 1024;

/// Lines of one partition, in line order, to go in one message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub partition: u32,
    pub lines: Vec<InputLine>,
    /// The payload size of [`Chunk::lines`] as a chunk of several.
    bytes: usize,
}

impl Chunk {
    /// The message: its headers and payload.
    pub fn message(&self, list: &str) -> (HeaderMap, Bytes) {
        match self.lines.as_slice() {
            [one] => (
                wire::line_headers(list, one),
                Bytes::copy_from_slice(one.raw()),
            ),
            lines => {
                let (first, last) = (lines[0].number, lines[lines.len() - 1].number);
                let mut h = HeaderMap::new();
                h.insert(NAME_MSG_ID, range_id(list, first, last));
                let mut payload = Vec::with_capacity(self.bytes);
                for l in lines {
                    write_entry(&mut payload, l);
                }
                (h, Bytes::from(payload))
            }
        }
    }
}

/// `LIST:FIRST-LAST`, the message id of a chunk of several lines.
fn range_id(list: &str, first: u64, last: u64) -> String {
    let mut id = wire::msg_id(list, first);
    id.push('-');
    id.push_str(itoa::Buffer::new().format(last));
    id
}

fn entry_len(l: &InputLine) -> usize {
    // Three numbers of at most 20 digits, two spaces and two newlines, and the bytes.
    l.raw().len() + 66
}

fn write_entry(out: &mut Vec<u8>, l: &InputLine) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(l.number).as_bytes());
    out.push(b' ');
    let kept = l.raw();
    out.extend_from_slice(buf.format(kept.len()).as_bytes());
    if l.len > kept.len() {
        out.push(b' ');
        out.extend_from_slice(buf.format(l.len).as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(kept);
    out.push(b'\n');
}

/// Groups a list's lines into chunks (see the module's doc). Lines go in in list order.
#[derive(Default)]
pub(crate) struct Chunker {
    open: HostMap<u32, Chunk>,
    /// The block of the lines pushed last.
    block: u64,
}

impl Chunker {
    /// Add a line of `partition`; returns the chunks it completed, if any.
    pub fn push(&mut self, partition: u32, line: InputLine) -> Vec<Chunk> {
        let mut done = Vec::new();
        let block = line.number.saturating_sub(1) / BLOCK;
        if block != self.block {
            done = self.finish();
            self.block = block;
        }
        let add = entry_len(&line);
        if let Some(c) = self.open.get(&partition) {
            if c.bytes + add > MAX_CHUNK_BYTES {
                done.extend(self.open.remove(&partition));
            }
        }
        let c = self.open.entry(partition).or_insert_with(|| Chunk {
            partition,
            lines: Vec::new(),
            bytes: 0,
        });
        c.lines.push(line);
        c.bytes += add;
        if c.lines.len() >= MAX_CHUNK_LINES || c.bytes >= MAX_CHUNK_BYTES {
            done.extend(self.open.remove(&partition));
        }
        done
    }

    /// The open chunks (at the end of the list, or of a block), by first line.
    pub fn finish(&mut self) -> Vec<Chunk> {
        let mut done: Vec<Chunk> = self.open.drain().map(|(_, c)| c).collect();
        done.sort_by_key(|c| c.lines[0].number);
        done
    }
}

/// The list id and the lines of a URL message: a chunk of several lines, a one-line message,
/// or a message of an earlier version.
pub(crate) fn decode(
    h: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(Arc<str>, Vec<InputLine>), WireError> {
    let id = h.and_then(|h| h.get(NAME_MSG_ID)).map(|v| v.as_str());
    let range = id.and_then(|id| {
        let (list, lines) = id.rsplit_once(':')?;
        let (first, last) = lines.split_once('-')?;
        Some((list, first, last))
    });
    let Some((list, first, last)) = range else {
        let (list, line) = wire::decode_line(h, payload)?;
        return Ok((list, vec![line]));
    };
    let bad = || WireError::Bad(HDR_MSG_ID, id.unwrap_or_default().to_string());
    let first: u64 = first.parse().map_err(|_| bad())?;
    let last: u64 = last.parse().map_err(|_| bad())?;
    if list.is_empty() || first >= last {
        return Err(bad());
    }
    let lines = entries(payload).ok_or(WireError::BadChunk)?;
    let ordered = lines.windows(2).all(|w| w[0].number < w[1].number);
    let ends = lines.first().map(|l| l.number) == Some(first)
        && lines.last().map(|l| l.number) == Some(last);
    if !ordered || !ends {
        return Err(WireError::BadChunk);
    }
    Ok((Arc::from(list), lines))
}

/// The entries of a chunk's payload (`None`: malformed, or a blank line in it).
fn entries(mut p: &[u8]) -> Option<Vec<InputLine>> {
    let mut out = Vec::new();
    while !p.is_empty() {
        let nl = memchr::memchr(b'\n', p)?;
        let head = std::str::from_utf8(&p[..nl]).ok()?;
        let mut fields = head.split(' ');
        let number: u64 = fields.next()?.parse().ok()?;
        let kept: usize = fields.next()?.parse().ok()?;
        let whole: Option<usize> = fields.next().map(str::parse).transpose().ok()?;
        if fields.next().is_some() {
            return None;
        }
        let rest = &p[nl + 1..];
        if rest.len() <= kept || rest[kept] != b'\n' {
            return None;
        }
        out.push(InputLine::from_raw(&rest[..kept], number, whole)?);
        p = &rest[kept + 1..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::tests::read;

    /// Every chunk of `lines` (partition: the line number modulo `parts`), as the chunker
    /// makes them.
    fn chunks(lines: &[InputLine], parts: u64) -> Vec<Chunk> {
        let mut c = Chunker::default();
        let mut out = Vec::new();
        for l in lines {
            out.extend(c.push((l.number % parts) as u32, l.clone()));
        }
        out.extend(c.finish());
        out
    }

    #[test]
    fn chunks_hold_every_line_once_by_partition_block_and_size() {
        let mut input = Vec::new();
        for i in 0..10_000 {
            input.extend_from_slice(format!("http://h{i}.test/p\n").as_bytes());
            if i % 777 == 0 {
                input.extend(std::iter::repeat_n(b'y', 5_000));
                input.push(b'\n');
            }
            if i % 1000 == 0 {
                input.push(b'\n');
            }
        }
        let lines = read(&input);
        let all = chunks(&lines, 7);
        let mut seen: Vec<u64> = all
            .iter()
            .flat_map(|c| c.lines.iter().map(|l| l.number))
            .collect();
        seen.sort_unstable();
        let want: Vec<u64> = lines.iter().map(|l| l.number).collect();
        assert_eq!(seen, want, "every line in exactly one chunk");
        for c in &all {
            assert!(!c.lines.is_empty() && c.lines.len() <= MAX_CHUNK_LINES);
            assert!(
                c.lines.len() == 1 || c.bytes <= MAX_CHUNK_BYTES,
                "{}",
                c.bytes
            );
            let block = (c.lines[0].number - 1) / BLOCK;
            for l in &c.lines {
                assert_eq!((l.number % 7) as u32, c.partition);
                assert_eq!((l.number - 1) / BLOCK, block);
            }
            let (_, payload) = c.message("l@00");
            assert!(payload.len() <= MAX_CHUNK_BYTES, "{}", payload.len());
        }
        assert!(all.len() < lines.len() / 20, "{} chunks", all.len());
        // The same list makes the same chunks (the same message ids).
        let ids = |cs: &[Chunk]| -> Vec<String> {
            cs.iter()
                .map(|c| c.message("l@00").0.get(NAME_MSG_ID).unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&all), ids(&chunks(&lines, 7)));
    }

    #[test]
    fn chunks_survive_the_trip_through_a_message() {
        let mut input = b"http://a.test/\n\nhttp://b/\xff\nnot a url \n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 20_000));
        input.extend_from_slice(b"\nhttp://c/ \x01 2\n");
        let lines = read(&input);
        let one = Chunk {
            partition: 0,
            lines: lines.clone(),
            bytes: lines.iter().map(entry_len).sum(),
        };
        let (h, payload) = one.message("l@00");
        assert_eq!(h.get(NAME_MSG_ID).unwrap().as_str(), "l@00:1-6");
        let (list, back) = decode(Some(&h), &payload).unwrap();
        assert_eq!(&*list, "l@00");
        assert_eq!(back, lines);
        // A chunk of one line is the one-line message.
        let single = Chunk {
            partition: 0,
            lines: vec![lines[1].clone()],
            bytes: 0,
        };
        let (h, payload) = single.message("l@00");
        assert_eq!(h.get(NAME_MSG_ID).unwrap().as_str(), "l@00:3");
        assert_eq!(&payload[..], lines[1].raw());
        assert_eq!(
            decode(Some(&h), &payload).unwrap().1,
            vec![lines[1].clone()]
        );
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let lines = read(b"http://a/\nhttp://b/\n");
        let c = Chunk {
            partition: 0,
            lines,
            bytes: 0,
        };
        let (h, payload) = c.message("l");
        let with_id = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert(NAME_MSG_ID, id);
            h
        };
        for id in ["l:1-x", "l:2-1", "l:1-1", ":1-2"] {
            assert!(
                matches!(
                    decode(Some(&with_id(id)), &payload),
                    Err(WireError::Bad(..))
                ),
                "{id}"
            );
        }
        assert_eq!(
            decode(Some(&with_id("l:1-3")), &payload).unwrap_err(),
            WireError::BadChunk,
            "the id does not name its lines"
        );
        for bad in [
            &payload[..payload.len() - 1],
            b"1 3\nabc",
            b"1 3\nabcX",
            b"x 1\na\n",
            b"1 1 1 1\na\n",
            b"1 1\n \n2 1\nb\n",
            b"2 1\na\n1 1\nb\n",
        ] {
            assert!(
                decode(Some(&h), bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
