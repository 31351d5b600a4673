//! Test-only: an in-process DNS server on 127.0.0.1 (UDP and TCP on one port, messages read
//! and built with hickory-proto) whose answer depends on the first label of the name, and
//! which logs every query it gets.
//!
//! Labels: `nx` NXDOMAIN, `nodata` no records, `fail` SERVFAIL, `refused` REFUSED, `silent`
//! never answers, `slow` answers after [`SLOW`], `big` is truncated over UDP and answered
//! over TCP, `alias` is a CNAME to `real.<rest>` (which has the A record), `spoof` first
//! gets an answer with another id and one for another question, `garbage` gets a malformed
//! (cut) answer with the right id, `v6` has an AAAA record too, `lossy` loses the first
//! query of each name and type. Anything else: A [`ANSWER_IP`]
//! with [`ANSWER_TTL`], no AAAA. While muted it answers nothing; in `ServFail` mode it
//! answers SERVFAIL to everything.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use std::io::{Read, Write};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub const ANSWER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
pub const ANSWER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7);
pub const ANSWER_TTL: u32 = 60;
pub const SLOW: Duration = Duration::from_millis(150);
/// The two addresses of a `big` name (over TCP).
pub const BIG_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 1, 1), Ipv4Addr::new(127, 0, 1, 2)];
const POLL: Duration = Duration::from_millis(20);

/// How the whole server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// By label (see the module doc).
    Normal = 0,
    /// Reads queries, answers none.
    Muted = 1,
    /// SERVFAIL to everything.
    ServFail = 2,
}

/// One query as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Lower case, no final dot.
    pub name: String,
    pub qtype: RecordType,
    pub id: u16,
    /// The client's address (its source port).
    pub from: SocketAddr,
    pub tcp: bool,
}

pub struct FakeDns {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl FakeDns {
    pub fn start() -> FakeDns {
        let (udp, tcp) = bind_pair();
        udp.set_read_timeout(Some(POLL)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let addr = udp.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(Mode::Normal as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let udp_thread = {
            let (log, mode, stop) = (log.clone(), mode.clone(), stop.clone());
            thread::spawn(move || serve_udp(udp, log, mode, stop))
        };
        let tcp_thread = {
            let (log, stop) = (log.clone(), stop.clone());
            thread::spawn(move || serve_tcp(tcp, log, stop))
        };
        FakeDns {
            addr,
            log,
            mode,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Queries for `name` of `qtype` received (UDP and TCP).
    pub fn queries(&self, name: &str, qtype: RecordType) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.name == name && s.qtype == qtype)
            .count()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn total(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no free port for both UDP and TCP");
}

fn name(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap();
    n.set_fqdn(true);
    n
}

fn record(owner: &Name, data: RData) -> Record {
    Record::from_rdata(owner.clone(), ANSWER_TTL, data)
}

fn response(query: &Message, rcode: ResponseCode, answers: Vec<Record>) -> Message {
    let mut msg = Message::response(query.metadata.id, OpCode::Query);
    msg.metadata.recursion_desired = query.metadata.recursion_desired;
    msg.metadata.recursion_available = true;
    msg.metadata.response_code = rcode;
    msg.add_queries(query.queries.clone());
    msg.add_answers(answers);
    msg
}

/// The (lower-case name, type) of a query message.
fn question(query: &Message) -> Option<(String, RecordType, Name)> {
    let q = query.queries.first()?;
    let text = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    Some((text, q.query_type(), q.name().clone()))
}

/// The full answer to a query by its first label (`tcp`: asked over TCP).
fn answer(query: &Message, tcp: bool) -> Option<Message> {
    let (text, qtype, qname) = question(query)?;
    let label = text.split('.').next().unwrap_or_default();
    let rest = text.split_once('.').map_or("", |(_, r)| r);
    let a = |owner: &Name, ip: Ipv4Addr| record(owner, RData::A(A(ip)));
    let msg = match label {
        "nx" => response(query, ResponseCode::NXDomain, vec![]),
        "nodata" => response(query, ResponseCode::NoError, vec![]),
        "fail" => response(query, ResponseCode::ServFail, vec![]),
        "refused" => response(query, ResponseCode::Refused, vec![]),
        "big" if !tcp => {
            let mut msg = response(query, ResponseCode::NoError, vec![]);
            msg.metadata.truncation = true;
            msg
        }
        "big" if qtype == RecordType::A => response(
            query,
            ResponseCode::NoError,
            BIG_IPS.iter().map(|&ip| a(&qname, ip)).collect(),
        ),
        "alias" => {
            let real = name(&format!("real.{rest}"));
            let mut answers = vec![record(&qname, RData::CNAME(CNAME(real.clone())))];
            if qtype == RecordType::A {
                answers.push(a(&real, ANSWER_IP));
            }
            response(query, ResponseCode::NoError, answers)
        }
        "v6" if qtype == RecordType::AAAA => response(
            query,
            ResponseCode::NoError,
            vec![record(&qname, RData::AAAA(AAAA(ANSWER_V6)))],
        ),
        _ if qtype == RecordType::A => {
            response(query, ResponseCode::NoError, vec![a(&qname, ANSWER_IP)])
        }
        _ => response(query, ResponseCode::NoError, vec![]),
    };
    Some(msg)
}

fn serve_udp(
    sock: UdpSocket,
    log: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
) {
    let sock = Arc::new(sock);
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if query.metadata.message_type != MessageType::Query {
            continue;
        }
        let Some((text, qtype, _)) = question(&query) else {
            continue;
        };
        log.lock().unwrap().push(Seen {
            name: text.clone(),
            qtype,
            id: query.metadata.id,
            from,
            tcp: false,
        });
        let label = text.split('.').next().unwrap_or_default().to_string();
        let first_of_its_kind = log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == text && s.qtype == qtype)
            .count()
            == 1;
        let send = |msg: &Message| {
            let _ = sock.send_to(&msg.to_vec().unwrap(), from);
        };
        match mode.load(Ordering::Relaxed) {
            m if m == Mode::Muted as u8 => continue,
            m if m == Mode::ServFail as u8 => {
                send(&response(&query, ResponseCode::ServFail, vec![]));
                continue;
            }
            _ => {}
        }
        let Some(reply) = answer(&query, false) else {
            continue;
        };
        match label.as_str() {
            "silent" => {}
            "lossy" if first_of_its_kind => {}
            "slow" => {
                let sock = sock.clone();
                thread::spawn(move || {
                    thread::sleep(SLOW);
                    let _ = sock.send_to(&reply.to_vec().unwrap(), from);
                });
            }
            "spoof" => {
                let mut wrong_id = reply.clone();
                wrong_id.metadata.id = reply.metadata.id.wrapping_add(1);
                send(&wrong_id);
                let mut other = reply.clone();
                other.queries[0].set_name(name("other.test"));
                send(&other);
                let mut bogus = response(&query, ResponseCode::NoError, vec![]);
                bogus.queries.clear();
                send(&bogus);
                send(&reply);
            }
            "garbage" => {
                let bytes = reply.to_vec().unwrap();
                // Cut inside the answer record.
                let _ = sock.send_to(&bytes[..bytes.len() - 3], from);
            }
            _ => send(&reply),
        }
    }
}

fn serve_tcp(listener: TcpListener, log: Arc<Mutex<Vec<Seen>>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut conn, from)) = listener.accept() else {
            thread::sleep(POLL);
            continue;
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            continue;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut body).is_err() {
            continue;
        }
        let Ok(query) = Message::from_vec(&body) else {
            continue;
        };
        let Some((text, qtype, _)) = question(&query) else {
            continue;
        };
        log.lock().unwrap().push(Seen {
            name: text,
            qtype,
            id: query.metadata.id,
            from,
            tcp: true,
        });
        if let Some(reply) = answer(&query, true) {
            let bytes = reply.to_vec().unwrap();
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let _ = conn.write_all(&framed);
        }
    }
}
