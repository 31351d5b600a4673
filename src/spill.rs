//! Overflow of a host's queue to disk, so that no host, dead or slow, can make intake wait
//! while other hosts have room.
//!
//! A worker keeps at most a per-host share of its queue bound in memory for any one host;
//! jobs of a host past that go to this host's spill file (an unlinked temporary file, so
//! nothing is left behind), and come back in batches as the host's queue drains. The
//! reader of a list therefore keeps reading (and other hosts' URLs keep flowing) behind a
//! host with fifty thousand slow URLs. A spilled job is a line `url \t src \t line`
//! (URLs hold no whitespace: intake refused those; spool names with control bytes never
//! become a `src`). Writes are buffered and reads are in batches; both are small, on the
//! worker thread, and mostly hit the page cache. Spilled jobs are in-memory state as far
//! as exactly-once is concerned: after a crash they have no record, and recovery fetches
//! them again.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::job::Job;

/// Bytes of spilled jobs buffered in memory per host before they are written.
const WRITE_BUFFER: usize = 64 * 1024;

/// One host's spilled jobs.
struct HostSpill {
    file: File,
    /// Where the next read starts and how far the file is written.
    read_at: u64,
    written: u64,
    /// Serialized jobs not yet written.
    pending: Vec<u8>,
    /// Jobs spilled and not yet taken back.
    jobs: usize,
    /// The last `src` read back, shared by the jobs of one list.
    last_src: Option<Arc<str>>,
}

/// The spill files of one worker, by host key.
#[derive(Default)]
pub(crate) struct Spill {
    hosts: crate::sched::HostMap<String, HostSpill>,
}

impl Spill {
    /// Spill `job` of `key` (after any earlier spilled job of it).
    pub(crate) fn push(&mut self, key: &str, job: &Job) -> io::Result<()> {
        if !self.hosts.contains_key(key) {
            let file = tempfile::tempfile()?;
            self.hosts.insert(
                key.to_string(),
                HostSpill {
                    file,
                    read_at: 0,
                    written: 0,
                    pending: Vec::new(),
                    jobs: 0,
                    last_src: None,
                },
            );
        }
        let h = self.hosts.get_mut(key).expect("inserted above");
        h.pending.extend_from_slice(job.url.as_bytes());
        h.pending.push(b'\t');
        if let Some(src) = &job.src {
            h.pending.extend_from_slice(src.as_bytes());
        }
        h.pending.push(b'\t');
        if let Some(line) = job.line {
            h.pending.extend_from_slice(line.to_string().as_bytes());
        }
        h.pending.push(b'\n');
        h.jobs += 1;
        if h.pending.len() >= WRITE_BUFFER {
            h.flush()?;
        }
        Ok(())
    }

    /// Jobs of `key` spilled and not taken back.
    pub(crate) fn len(&self, key: &str) -> usize {
        self.hosts.get(key).map_or(0, |h| h.jobs)
    }

    /// All spilled jobs.
    pub(crate) fn total(&self) -> usize {
        self.hosts.values().map(|h| h.jobs).sum()
    }

    /// The hosts that have spilled jobs.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// Take back up to `max` of `key`'s spilled jobs, oldest first (its file goes once
    /// empty).
    pub(crate) fn take(&mut self, key: &str, max: usize) -> io::Result<Vec<Job>> {
        let Some(h) = self.hosts.get_mut(key) else {
            return Ok(Vec::new());
        };
        h.flush()?;
        h.file.seek(SeekFrom::Start(h.read_at))?;
        let mut reader = BufReader::new((&h.file).take(h.written - h.read_at));
        let mut out = Vec::with_capacity(max.min(h.jobs));
        let mut line = String::new();
        while out.len() < max {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            h.read_at += n as u64;
            let mut fields = line.trim_end_matches('\n').splitn(3, '\t');
            let url = fields.next().unwrap_or_default().to_string();
            let src = fields
                .next()
                .filter(|s| !s.is_empty())
                .map(|s| match &h.last_src {
                    Some(last) if &**last == s => last.clone(),
                    _ => {
                        let src: Arc<str> = Arc::from(s);
                        h.last_src = Some(src.clone());
                        src
                    }
                });
            let number = fields.next().and_then(|n| n.parse().ok());
            out.push(Job::new(url, src, number));
        }
        h.jobs -= out.len();
        if h.jobs == 0 {
            self.hosts.remove(key);
        }
        Ok(out)
    }

    /// Forget every spilled job (the engine drains).
    pub(crate) fn clear(&mut self) {
        self.hosts.clear();
    }
}

impl HostSpill {
    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(self.written))?;
        self.file.write_all(&self.pending)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(i: u64, src: Option<&Arc<str>>) -> Job {
        Job::new(format!("http://h.test/{i}"), src.cloned(), src.map(|_| i))
    }

    #[test]
    fn jobs_come_back_in_order_across_buffered_writes_and_batches() {
        let mut s = Spill::default();
        let list: Arc<str> = Arc::from("list-1.txt");
        let n = 10_000u64; // well past one write buffer
        for i in 0..n {
            s.push("h", &job(i, Some(&list))).unwrap();
            if i == 5 {
                // Reads may interleave with writes.
                let first = s.take("h", 2).unwrap();
                assert_eq!(first[0].url, "http://h.test/0");
                assert_eq!(first[1].line, Some(1));
            }
        }
        s.push("other", &job(7, None)).unwrap();
        assert_eq!(s.len("h"), n as usize - 2);
        assert_eq!(s.total(), n as usize - 1);
        let mut next = 2;
        loop {
            let batch = s.take("h", 999).unwrap();
            if batch.is_empty() {
                break;
            }
            for j in batch {
                assert_eq!(j.url, format!("http://h.test/{next}"));
                assert_eq!((j.src.as_deref(), j.line), (Some("list-1.txt"), Some(next)));
                assert_eq!(j.attempts, 0);
                next += 1;
            }
        }
        assert_eq!(next, n);
        assert_eq!(s.len("h"), 0);
        assert_eq!(s.keys(), vec!["other".to_string()]);
        let o = s.take("other", 10).unwrap();
        assert_eq!(
            (o[0].url.as_str(), o[0].src.is_none(), o[0].line),
            ("http://h.test/7", true, None)
        );
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn jobs_of_one_list_share_their_src() {
        let mut s = Spill::default();
        let list: Arc<str> = Arc::from("l");
        for i in 0..3 {
            s.push("h", &job(i, Some(&list))).unwrap();
        }
        let back = s.take("h", 3).unwrap();
        let a = back[0].src.as_ref().unwrap();
        assert!(Arc::ptr_eq(a, back[2].src.as_ref().unwrap()));
    }
}
