//! Sans-IO: what the cluster's messages hold and where they go. A URL line becomes a message
//! on `PREFIX.urls.<partition>` (partition: a stable hash of the URL's host key, or of the
//! line's bytes when it is not a URL), with the line's kept raw bytes as payload; a record
//! becomes a message on `PREFIX.records`. Both carry their keys in one header, `Nats-Msg-Id`
//! = `LIST:LINE` (a list id has no `:`), so JetStream's duplicate window drops a second copy;
//! messages of earlier versions, with the keys in `Ringcrawl-List` and `Ringcrawl-Line`, are
//! read too. Also the list id (a list's name and a digest of its content) and the names
//! of lease keys. No sockets, no clocks: unit-tested without a server.

use std::io::{self, Read};
use std::sync::Arc;

use async_nats::header::HeaderName;
use async_nats::{HeaderMap, Subject};

use crate::intake::{host_key, parse_url, InputLine};

/// The list a message's line belongs to (its list id): written by earlier versions, read
/// when present.
pub const HDR_LIST: &str = "Ringcrawl-List";
/// The line's 1-based number in its list (as [`HDR_LIST`]).
pub const HDR_LINE: &str = "Ringcrawl-Line";
/// The whole trimmed length of a line cut to the kept bytes (only on such lines).
pub const HDR_LEN: &str = "Ringcrawl-Len";
/// JetStream's de-duplication header, `LIST:LINE`: the keys of a line and of its record.
pub const HDR_MSG_ID: &str = "Nats-Msg-Id";
/// The header names as the client's values (a `&str` name is parsed again at every use).
const NAME_LIST: HeaderName = HeaderName::from_static(HDR_LIST);
const NAME_LINE: HeaderName = HeaderName::from_static(HDR_LINE);
const NAME_LEN: HeaderName = HeaderName::from_static(HDR_LEN);
pub(super) const NAME_MSG_ID: HeaderName = HeaderName::from_static(HDR_MSG_ID);
/// Bytes of a list's file name kept in its id.
pub const MAX_LIST_NAME: usize = 64;
/// Hex digits of the content digest in a list id (64 bits).
pub const LIST_DIGEST_HEX: usize = 16;
/// Read buffer when digesting a list.
const DIGEST_BUFFER: usize = 256 * 1024;

/// A message that is not one of ours (one line per cause).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message has no {0} header")]
    Missing(&'static str),
    #[error("bad {0} header: {1:?}")]
    Bad(&'static str, String),
    #[error("message holds a blank line")]
    Blank,
    #[error("malformed chunk of lines")]
    BadChunk,
}

/// The subjects and names derived from the configured prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Subjects {
        Subjects {
            prefix: prefix.to_string(),
        }
    }

    /// `PREFIX.urls.N`: partition `n`'s URL lines.
    pub fn url(&self, partition: u32) -> String {
        format!("{}.urls.{partition}", self.prefix)
    }

    /// `PREFIX.records`.
    pub fn records(&self) -> String {
        format!("{}.records", self.prefix)
    }
}

/// The subjects messages are published to, built once (a message's subject is then a
/// reference count, not a formatted string).
#[derive(Clone, Debug)]
pub struct Targets {
    urls: Arc<[Subject]>,
    records: Subject,
}

impl Targets {
    pub fn new(subjects: &Subjects, partitions: u32) -> Targets {
        Targets {
            urls: (0..partitions.max(1))
                .map(|p| Subject::from(subjects.url(p)))
                .collect(),
            records: Subject::from(subjects.records()),
        }
    }

    /// The subject of a line's partition.
    pub fn url(&self, line: &InputLine) -> &Subject {
        self.partition_url(self.partition(line))
    }

    /// A line's partition.
    pub fn partition(&self, line: &InputLine) -> u32 {
        partition(line, self.urls.len() as u32)
    }

    /// The subject of partition `p`.
    pub fn partition_url(&self, p: u32) -> &Subject {
        &self.urls[p as usize]
    }

    pub fn records(&self) -> &Subject {
        &self.records
    }
}

/// The lease key of a partition in the lease bucket.
pub fn lease_key(partition: u32) -> String {
    format!("p{partition}")
}

/// The partition of a lease key.
pub fn lease_partition(key: &str) -> Option<u32> {
    key.strip_prefix('p')?.parse().ok()
}

/// 64-bit FNV-1a: a hash that is the same on every machine, build and version (the standard
/// library's hasher promises none of that), so every submitter sends a host to one partition.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The partition of a line: by its URL's host key (scheme, host, port), so all URLs of a host
/// meet one node; a line that is not a URL by its bytes (it becomes its `invalid_url` record
/// wherever it lands).
pub fn partition(line: &InputLine, partitions: u32) -> u32 {
    let h = match parse_url(line) {
        Ok(url) => fnv1a(host_key(&url).as_bytes()),
        Err(_) => fnv1a(line.raw()),
    };
    (h % u64::from(partitions.max(1))) as u32
}

/// `LIST:LINE`, the message id of a line and of its record.
pub fn msg_id(list: &str, line: u64) -> String {
    let mut buf = itoa::Buffer::new();
    let n = buf.format(line);
    let mut id = String::with_capacity(list.len() + 1 + n.len());
    id.push_str(list);
    id.push(':');
    id.push_str(n);
    id
}

/// The list id: the list's name (sanitized, at most [`MAX_LIST_NAME`] bytes) and the first
/// 64 bits of the SHA-256 of its content, `NAME@HEX`. The same file queued again gets the
/// same id (and its lines the same message ids, which the duplicate window drops); another
/// name or another content gets another id.
pub fn list_id(name: &str, digest: &[u8]) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LIST_NAME)
        .collect();
    if clean.is_empty() {
        clean.push_str("list");
    }
    let hex: String = digest
        .iter()
        .take(LIST_DIGEST_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{clean}@{hex}")
}

/// SHA-256 of everything `r` yields.
pub fn digest_of(mut r: impl Read) -> io::Result<ring::digest::Digest> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; DIGEST_BUFFER];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(ctx.finish()),
            Ok(n) => ctx.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The headers of a URL line's message: its keys (one header: every header costs the client
/// and the server work on every message), and the whole length of a cut line.
pub fn line_headers(list: &str, line: &InputLine) -> HeaderMap {
    let mut h = record_headers(list, line.number);
    if line.len > line.raw().len() {
        h.insert(NAME_LEN, itoa::Buffer::new().format(line.len));
    }
    h
}

/// The headers of a record's message: its keys.
pub fn record_headers(list: &str, line: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(NAME_MSG_ID, msg_id(list, line));
    h
}

fn header<'a>(h: Option<&'a HeaderMap>, name: &HeaderName) -> Option<&'a str> {
    h.and_then(|h| h.get(name.clone())).map(|v| v.as_str())
}

fn number(
    h: Option<&HeaderMap>,
    name: &HeaderName,
    what: &'static str,
) -> Result<Option<u64>, WireError> {
    header(h, name)
        .map(|v| v.parse().map_err(|_| WireError::Bad(what, v.to_string())))
        .transpose()
}

/// The `(list, line)` keys of a message: from its `Nats-Msg-Id`, or from `Ringcrawl-List` and
/// `Ringcrawl-Line` when it has them (a message of an earlier version).
pub fn keys(h: Option<&HeaderMap>) -> Result<(&str, u64), WireError> {
    let Some(list) = header(h, &NAME_LIST) else {
        let id = header(h, &NAME_MSG_ID).ok_or(WireError::Missing(HDR_MSG_ID))?;
        let bad = || WireError::Bad(HDR_MSG_ID, id.to_string());
        let (list, line) = id.rsplit_once(':').ok_or_else(bad)?;
        let line: u64 = line.parse().map_err(|_| bad())?;
        if list.is_empty() {
            return Err(bad());
        }
        return Ok((list, line));
    };
    if list.is_empty() {
        return Err(WireError::Bad(HDR_LIST, String::new()));
    }
    let line = number(h, &NAME_LINE, HDR_LINE)?.ok_or(WireError::Missing(HDR_LINE))?;
    Ok((list, line))
}

/// A URL message back into the list id and the line the submitter read.
pub fn decode_line(
    h: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<(Arc<str>, InputLine), WireError> {
    let (list, line_number) = keys(h)?;
    let len = number(h, &NAME_LEN, HDR_LEN)?.map(|n| n as usize);
    let line = InputLine::from_raw(payload, line_number, len).ok_or(WireError::Blank)?;
    Ok((Arc::from(list), line))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::intake::{LineReader, ReadLimits};

    /// The lines the one line reader makes of `input` (also for `chunk`'s tests).
    pub(crate) fn read(input: &[u8]) -> Vec<InputLine> {
        LineReader::new(input, ReadLimits::default())
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn every_url_of_a_host_meets_one_partition() {
        let lines = read(
            b"http://A.example/x\nhttp://a.example:80/y?z\nhttps://a.example/\nnot a url\nnot a url\n",
        );
        let p: Vec<u32> = lines.iter().map(|l| partition(l, 64)).collect();
        assert_eq!(p[0], p[1], "same host key, same partition");
        assert_eq!(p[3], p[4], "same invalid text, same partition");
        assert!(p.iter().all(|&x| x < 64));
        let spread: std::collections::BTreeSet<u32> = (0..1000)
            .map(|i| {
                let l = read(format!("http://h{i}.test/\n").as_bytes()).remove(0);
                partition(&l, 16)
            })
            .collect();
        assert_eq!(spread.len(), 16, "hosts spread over every partition");
        assert_eq!(partition(&lines[0], 1), 0);
    }

    #[test]
    fn a_line_survives_the_trip_through_a_message() {
        let mut input = b"http://a.test/\n\nhttp://b/\xff\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 20_000));
        input.push(b'\n');
        for line in read(&input) {
            let h = line_headers("l@00", &line);
            let (list, back) = decode_line(Some(&h), line.raw()).unwrap();
            assert_eq!(&*list, "l@00");
            assert_eq!(back, line);
            assert_eq!(
                h.get(NAME_MSG_ID).unwrap().as_str(),
                format!("l@00:{}", line.number)
            );
            assert_eq!(h.get(NAME_LEN).is_some(), line.len > 20_000 - 1);
        }
    }

    #[test]
    fn foreign_messages_are_refused() {
        assert_eq!(
            decode_line(None, b"http://a/").unwrap_err(),
            WireError::Missing(HDR_MSG_ID)
        );
        for bad in ["x", "l:", ":3", "l:x", "l:-1"] {
            let mut h = HeaderMap::new();
            h.insert(NAME_MSG_ID, bad);
            assert!(
                matches!(
                    decode_line(Some(&h), b"a"),
                    Err(WireError::Bad(HDR_MSG_ID, _))
                ),
                "{bad:?}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(HDR_LIST, "l");
        h.insert(HDR_LINE, "x");
        assert!(matches!(
            decode_line(Some(&h), b"a"),
            Err(WireError::Bad(HDR_LINE, _))
        ));
        h.insert(HDR_LINE, "3");
        assert_eq!(decode_line(Some(&h), b"  ").unwrap_err(), WireError::Blank);
        assert_eq!(keys(Some(&record_headers("l", 9))).unwrap(), ("l", 9));
    }

    #[test]
    fn one_header_carries_the_keys_and_earlier_messages_are_read() {
        let h = record_headers("urls.txt@00ff", 12);
        assert_eq!(h.len(), 1);
        assert_eq!(keys(Some(&h)).unwrap(), ("urls.txt@00ff", 12));
        // An earlier version's message: the keys in headers of their own.
        let mut old = HeaderMap::new();
        old.insert(NAME_MSG_ID, "urls.txt@00ff:7");
        old.insert(HDR_LIST, "urls.txt@00ff");
        old.insert(HDR_LINE, "7");
        let (list, line) = decode_line(Some(&old), b"http://a/").unwrap();
        assert_eq!((&*list, line.number), ("urls.txt@00ff", 7));
    }

    #[test]
    fn list_ids_name_the_list_and_its_content() {
        let d1 = digest_of(&b"http://a/\n"[..]).unwrap();
        let d2 = digest_of(&b"http://b/\n"[..]).unwrap();
        let id = list_id("urls.txt", d1.as_ref());
        assert_eq!(id, list_id("urls.txt", d1.as_ref()), "stable");
        assert!(id.starts_with("urls.txt@") && id.len() == 9 + LIST_DIGEST_HEX);
        assert_ne!(id, list_id("urls.txt", d2.as_ref()));
        assert_ne!(id, list_id("other.txt", d1.as_ref()));
        assert!(list_id("a b:c/é", d1.as_ref()).starts_with("a_b_c__@"));
        assert!(list_id("", d1.as_ref()).starts_with("list@"));
    }

    #[test]
    fn subjects_and_lease_keys() {
        let s = Subjects::new("rc.test");
        assert_eq!(s.url(7), "rc.test.urls.7");
        assert_eq!(s.records(), "rc.test.records");
        assert_eq!(lease_partition(&lease_key(12)), Some(12));
        assert_eq!(lease_partition("x1"), None);
    }
}
