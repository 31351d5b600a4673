//! Sans-IO de-duplication for `collect`: which `(list, line)` keys the output file already
//! holds. The file is scanned once at start (its torn tail having been cut), and every record
//! that arrives is admitted only if its key is new, so a record published twice, or written
//! and then redelivered because the process died before its ack, is written once. One bit per
//! line of each list (`spool::LineSet`).

use std::collections::HashMap;
use std::io::{self, BufRead};

use crate::spool::scan::RecordKey;
use crate::spool::LineSet;

/// The keys written so far.
#[derive(Debug, Default)]
pub struct Seen {
    lists: HashMap<String, LineSet>,
}

/// The `(src, line)` of a record's JSON text, if it has both.
pub fn record_key(json: &[u8]) -> Option<(String, u64)> {
    let k: RecordKey = serde_json::from_slice(json).ok()?;
    Some((k.src?.into_owned(), k.line?))
}

impl Seen {
    /// The keys of every complete line of `r` (a last line without `\n` is not a record).
    pub fn scan(mut r: impl BufRead) -> io::Result<Seen> {
        let mut seen = Seen::default();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if r.read_until(b'\n', &mut buf)? == 0 || buf.last() != Some(&b'\n') {
                return Ok(seen);
            }
            if let Some((list, line)) = record_key(&buf) {
                seen.admit(&list, line);
            }
        }
    }

    /// Record `(list, line)`; `true` when it was not there yet (write it), `false` for a
    /// duplicate (skip it).
    pub fn admit(&mut self, list: &str, line: u64) -> bool {
        let set = match self.lists.get_mut(list) {
            Some(s) => s,
            None => self.lists.entry(list.to_string()).or_default(),
        };
        set.insert(line)
    }

    /// Distinct keys held.
    pub fn len(&self) -> u64 {
        self.lists.values().map(LineSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_s_records_are_known_and_a_torn_tail_is_not() {
        let text = b"{\"url\":\"a\",\"src\":\"l@1\",\"line\":1}\n\
            {\"url\":\"b\",\"src\":\"l@1\",\"line\":2}\n\
            not json\n\
            {\"url\":\"c\",\"title\":\"has \\\"src\\\":\\\"x\\\"\",\"src\":\"m@2\",\"line\":1}\n\
            {\"url\":\"d\",\"src\":\"l@1\",\"li";
        let mut seen = Seen::scan(&text[..]).unwrap();
        assert_eq!(seen.len(), 3);
        assert!(!seen.admit("l@1", 1), "already in the file");
        assert!(!seen.admit("m@2", 1));
        assert!(seen.admit("x", 1), "a key in a title is not a key");
        assert!(seen.admit("l@1", 4), "the torn record is written again");
        assert!(!seen.admit("l@1", 4), "and only once");
    }

    #[test]
    fn record_keys() {
        assert_eq!(
            record_key(br#"{"src":"a","line":3}"#),
            Some(("a".to_string(), 3))
        );
        assert_eq!(record_key(br#"{"url":"x"}"#), None);
        assert_eq!(record_key(b"{"), None);
    }
}
