//! Minimal DNS wire helpers for tests: a hand-made A query over UDP (to check dnsmasq), and
//! [`FaultDns`], an in-process UDP DNS server that answers SERVFAIL to everything or never
//! answers at all (for `dns_failure` / `dns_timeout`).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// DNS RCODE values used by the tests.
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;
const POLL: Duration = Duration::from_millis(50);

/// Build a recursive query for `name`, type A, with transaction id `id`.
pub fn build_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1
    for label in name.trim_end_matches('.').split('.') {
        assert!(!label.is_empty() && label.len() < 64, "bad label in {name}");
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_A.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// The parts of a DNS answer the tests look at.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u16,
    pub rcode: u8,
    pub a: Vec<Ipv4Addr>,
}

fn skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *msg.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

/// Parse a response: id, rcode and every A record of the answer section.
pub fn parse_answer(msg: &[u8]) -> Option<Answer> {
    if msg.len() < HEADER_LEN || msg[2] & 0x80 == 0 {
        return None;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let rcode = msg[3] & 0x0f;
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut i = HEADER_LEN;
    for _ in 0..qd {
        i = skip_name(msg, i)? + 4;
    }
    let mut a = Vec::new();
    for _ in 0..an {
        i = skip_name(msg, i)?;
        let rtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
        let rdlen = u16::from_be_bytes([*msg.get(i + 8)?, *msg.get(i + 9)?]) as usize;
        let data = msg.get(i + 10..i + 10 + rdlen)?;
        if rtype == TYPE_A && rdlen == 4 {
            a.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + rdlen;
    }
    Some(Answer { id, rcode, a })
}

/// Send one A query for `name` to `server` over UDP and wait up to `timeout` for the answer.
pub fn query_a(server: SocketAddr, name: &str, timeout: Duration) -> std::io::Result<Answer> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(timeout))?;
    let id = 0x5a5a ^ (name.len() as u16);
    sock.send_to(&build_query(id, name), server)?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        if from != server {
            continue;
        }
        match parse_answer(&buf[..n]) {
            Some(ans) if ans.id == id => return Ok(ans),
            _ => continue,
        }
    }
}

/// How a [`FaultDns`] misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultDnsMode {
    /// Answer every query with SERVFAIL.
    ServFail,
    /// Read queries and never answer.
    Silent,
}

/// An in-process UDP DNS server on 127.0.0.1 that fails in one way. Stops on drop.
pub struct FaultDns {
    pub addr: SocketAddr,
    queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultDns {
    pub fn start(mode: FaultDnsMode) -> FaultDns {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        sock.set_read_timeout(Some(POLL)).expect("set_read_timeout");
        let addr = sock.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let (st, qs) = (stop.clone(), queries.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < HEADER_LEN {
                    continue;
                }
                qs.fetch_add(1, Ordering::Relaxed);
                if mode == FaultDnsMode::ServFail {
                    let mut resp = buf[..n].to_vec();
                    resp[2] = 0x80 | (buf[2] & 0x79); // QR, keep opcode + RD
                    resp[3] = 0x80 | RCODE_SERVFAIL; // RA
                    resp[6..12].fill(0);
                    let _ = sock.send_to(&resp, from);
                }
            }
        });
        FaultDns {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for FaultDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
