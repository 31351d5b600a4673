//! The stub resolver's UDP transport: per server, a small pool of connected UDP sockets
//! that every query of the worker shares, instead of a socket (socket, bind, epoll
//! registration) per query.
//!
//! Spoofing protection stays what a socket per query gives: each socket has a source port
//! the kernel picked at random, a query goes to a randomly chosen socket of the pool with a
//! random 16-bit id (from `rand`'s thread-local CSPRNG) not in use on that socket, and an
//! answer counts only if it comes from the server's address to that socket with that id and
//! the same question (see `wire`); anything else is ignored and counted. A socket is
//! replaced after [`MAX_QUERIES_PER_SOCKET`] queries or [`SOCKET_MAX_AGE`], so no port
//! lives long; a replaced socket closes once its last query is done.
//!
//! Each open socket has one receive task (spawned on the worker's runtime) that reads its
//! answers and hands each to the query waiting for it. A query's claim on its id goes away
//! when the query is answered, fails or is dropped (a cancelled lookup leaves nothing).
//!
//! The pool also keeps what the server's answers teach (`policy`): its round trips (for
//! the retransmission timeout) and how many queries it takes at once (the window; queries
//! beyond it wait their turn here, in order).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::policy::{Rtt, Window};
use super::wire::{self, Question, Reply, MAX_UDP_ANSWER};

/// Sockets per server in a worker's pool, at most.
pub const SOCKETS_PER_SERVER: usize = 4;
/// Queries waiting on one socket at most (so a random id is found at once, and a blind
/// spoofer's odds per packet stay at most this many in 65,536 per port guessed right).
pub const MAX_PENDING_PER_SOCKET: usize = 256;
/// Queries sent on one socket before it is replaced.
pub const MAX_QUERIES_PER_SOCKET: u32 = 1000;
/// Age at which a socket is replaced.
pub const SOCKET_MAX_AGE: Duration = Duration::from_secs(30);

/// When sockets are replaced (tests make it sooner).
#[derive(Clone, Copy, Debug)]
pub struct Renewal {
    pub max_queries: u32,
    pub max_age: Duration,
}

impl Default for Renewal {
    fn default() -> Self {
        Renewal {
            max_queries: MAX_QUERIES_PER_SOCKET,
            max_age: SOCKET_MAX_AGE,
        }
    }
}

/// Transport counters shared by a worker's pools.
#[derive(Debug, Default)]
pub struct UdpCounters {
    /// Sockets opened.
    pub sockets: Cell<u64>,
    /// Datagrams that answered no query (wrong source, unknown id, other question).
    pub ignored: Cell<u64>,
    /// Queries waiting on a socket now (claimed ids).
    pub waiting: Cell<usize>,
}

impl UdpCounters {
    fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}

/// Queries in flight to one server, and who waits for room.
struct Flow {
    window: RefCell<Window>,
    rtt: Cell<Rtt>,
    in_flight: Cell<usize>,
    room: Notify,
}

impl Flow {
    /// Wait until the window has room, and take it.
    async fn enter(self: &Rc<Self>) -> Turn {
        loop {
            let room = self.room.notified();
            if self.in_flight.get() < self.window.borrow().limit() {
                self.in_flight.set(self.in_flight.get() + 1);
                return Turn { flow: self.clone() };
            }
            room.await;
        }
    }
}

/// A query's place in its server's window, given back when dropped.
struct Turn {
    flow: Rc<Flow>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let flow = &self.flow;
        flow.in_flight.set(flow.in_flight.get() - 1);
        if flow.in_flight.get() < flow.window.borrow().limit() {
            flow.room.notify_one();
        }
    }
}

/// One server's sockets.
pub struct ServerPool {
    server: SocketAddr,
    renewal: Renewal,
    slots: RefCell<Vec<Option<Rc<Sock>>>>,
    flow: Rc<Flow>,
    counters: Rc<UdpCounters>,
}

impl ServerPool {
    pub fn new(server: SocketAddr, renewal: Renewal, counters: Rc<UdpCounters>) -> ServerPool {
        ServerPool {
            server,
            renewal,
            slots: RefCell::new(vec![None; SOCKETS_PER_SERVER]),
            flow: Rc::new(Flow {
                // Half the pool's room: overdue queries leave the window but keep their ids
                // until their question ends.
                window: RefCell::new(Window::new(SOCKETS_PER_SERVER * MAX_PENDING_PER_SOCKET / 2)),
                rtt: Cell::new(Rtt::default()),
                in_flight: Cell::new(0),
                room: Notify::new(),
            }),
            counters,
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The server's retransmission timeout now.
    pub fn rto(&self) -> Duration {
        self.flow.rtt.get().rto()
    }

    /// Send a query for `q` and wait for its answer; it counts as lost (the window halves)
    /// if it is not there after `overdue`, but is still waited for: the caller's tries
    /// decide how long. Must run inside the worker's runtime.
    pub async fn exchange(
        &self,
        q: &Question,
        edns: bool,
        overdue: Duration,
    ) -> Result<Message, String> {
        let mut turn = Some(self.flow.enter().await);
        let sock = self.pick(Instant::now())?;
        let (tx, mut rx) = oneshot::channel();
        let claim = sock.claim(q.clone(), tx);
        let query = wire::encode_query(claim.id, q, edns).map_err(|e| e.to_string())?;
        sock.send(&query)
            .await
            .map_err(|e| format!("cannot send to {}: {e}", self.server))?;
        let sent = Instant::now();
        let answer = tokio::select! {
            answer = &mut rx => answer,
            () = tokio::time::sleep(overdue) => {
                // Lost, as far as the window goes: it leaves the flight (so that a full
                // window of lost queries cannot hold back their own retries).
                self.flow.window.borrow_mut().lost(sent, Instant::now());
                turn.take();
                rx.await
            }
        };
        let answer = answer.unwrap_or_else(|_| Err(format!("socket to {} closed", self.server)));
        if answer.is_ok() {
            let mut rtt = self.flow.rtt.get();
            rtt.sample(sent.elapsed());
            self.flow.rtt.set(rtt);
            let grew = {
                let mut window = self.flow.window.borrow_mut();
                let before = window.limit();
                window.answered(self.flow.in_flight.get());
                window.limit() > before
            };
            if grew {
                self.flow.room.notify_one();
            }
        }
        drop(claim);
        drop(turn);
        answer
    }

    /// Sockets open now (replaced ones still finishing their queries not counted).
    #[cfg(test)]
    pub fn open_sockets(&self) -> usize {
        self.slots.borrow().iter().flatten().count()
    }

    /// Queries in this pool's window now.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.flow.in_flight.get()
    }

    /// A socket with room, from a random slot on: a worn-out socket is replaced, an empty
    /// slot opened. The window (never above the pool's room) guarantees that some slot has
    /// room.
    fn pick(&self, now: Instant) -> Result<Rc<Sock>, String> {
        let mut slots = self.slots.borrow_mut();
        let start = rand::random_range(0..slots.len());
        for k in 0..slots.len() {
            let i = (start + k) % slots.len();
            if slots[i].as_ref().is_some_and(|s| s.worn(now, self.renewal)) {
                if let Some(old) = slots[i].take() {
                    old.retire();
                }
            }
            match &slots[i] {
                Some(sock) if sock.pending.borrow().len() < MAX_PENDING_PER_SOCKET => {
                    return Ok(sock.clone())
                }
                Some(_) => continue,
                None => {
                    let sock = Sock::open(self.server, now, self.counters.clone())
                        .map_err(|e| format!("cannot open a UDP socket to {}: {e}", self.server))?;
                    UdpCounters::bump(&self.counters.sockets);
                    slots[i] = Some(sock.clone());
                    return Ok(sock);
                }
            }
        }
        Err(format!("no room for a query to {}", self.server))
    }
}

impl Drop for ServerPool {
    fn drop(&mut self) {
        for sock in self.slots.get_mut().iter().flatten() {
            sock.stop_receiving();
        }
    }
}

/// A query waiting on a socket.
struct Waiting {
    question: Question,
    answer: oneshot::Sender<Result<Message, String>>,
}

/// One connected socket and the queries waiting on it.
struct Sock {
    udp: UdpSocket,
    server: SocketAddr,
    opened: Instant,
    sent: Cell<u32>,
    /// Replaced in its pool: takes no new query, closes when the last one is done.
    retired: Cell<bool>,
    pending: RefCell<HashMap<u16, Waiting>>,
    receiver: RefCell<Option<JoinHandle<()>>>,
    counters: Rc<UdpCounters>,
}

impl Sock {
    /// A UDP socket on a kernel-chosen random port, connected to `server` (so the kernel
    /// drops datagrams from anywhere else), and its receive task.
    fn open(
        server: SocketAddr,
        now: Instant,
        counters: Rc<UdpCounters>,
    ) -> std::io::Result<Rc<Sock>> {
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let std_sock = std::net::UdpSocket::bind(local)?;
        std_sock.connect(server)?;
        std_sock.set_nonblocking(true)?;
        let sock = Rc::new(Sock {
            udp: UdpSocket::from_std(std_sock)?,
            server,
            opened: now,
            sent: Cell::new(0),
            retired: Cell::new(false),
            pending: RefCell::new(HashMap::new()),
            receiver: RefCell::new(None),
            counters,
        });
        let task = tokio::task::spawn_local(receive(sock.clone()));
        *sock.receiver.borrow_mut() = Some(task);
        Ok(sock)
    }

    /// Due for replacement: retired after an error, or used or old enough.
    fn worn(&self, now: Instant, renewal: Renewal) -> bool {
        self.retired.get()
            || self.sent.get() >= renewal.max_queries
            || now.duration_since(self.opened) >= renewal.max_age
    }

    /// A random id not in use on this socket, claimed for a query for `question`.
    fn claim(
        self: &Rc<Self>,
        question: Question,
        answer: oneshot::Sender<Result<Message, String>>,
    ) -> Claim {
        let mut pending = self.pending.borrow_mut();
        let id = loop {
            let id: u16 = rand::random();
            if !pending.contains_key(&id) {
                break id;
            }
        };
        pending.insert(id, Waiting { question, answer });
        self.sent.set(self.sent.get().saturating_add(1));
        let waiting = &self.counters.waiting;
        waiting.set(waiting.get() + 1);
        Claim {
            sock: self.clone(),
            id,
        }
    }

    /// Send a query: straight away (a connected UDP socket with room in its send buffer
    /// does not block), through the reactor if the buffer is full.
    async fn send(&self, query: &[u8]) -> std::io::Result<()> {
        match socket2::SockRef::from(&self.udp).send(query) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.udp.send(query).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Hand a datagram to the query it answers, if any.
    fn deliver(&self, datagram: &[u8]) {
        let mut pending = self.pending.borrow_mut();
        let Some(id) = wire::message_id(datagram).filter(|id| pending.contains_key(id)) else {
            UdpCounters::bump(&self.counters.ignored);
            return;
        };
        let answer = match wire::read_reply(datagram, &pending[&id].question) {
            Reply::Mismatch => {
                UdpCounters::bump(&self.counters.ignored);
                return;
            }
            Reply::Answer(msg) => Ok(msg),
            Reply::Malformed(why) => Err(format!("{} sent a {why}", self.server)),
        };
        if let Some(waiting) = pending.remove(&id) {
            let _ = waiting.answer.send(answer);
        }
    }

    /// A receive error (an ICMP error: port unreachable, host unreachable) fails every
    /// query on the socket, which is then replaced.
    fn fail_all(&self, e: &std::io::Error) {
        self.retired.set(true);
        for (_, waiting) in self.pending.borrow_mut().drain() {
            let _ = waiting.answer.send(Err(format!("{}: {e}", self.server)));
        }
    }

    fn retire(&self) {
        self.retired.set(true);
        self.close_if_done();
    }

    /// A retired socket with no query left stops its receive task (the last reference to
    /// the socket then closes it).
    fn close_if_done(&self) {
        if self.retired.get() && self.pending.borrow().is_empty() {
            self.stop_receiving();
        }
    }

    fn stop_receiving(&self) {
        if let Some(task) = self.receiver.borrow_mut().take() {
            task.abort();
        }
    }
}

/// A query's id on a socket, released when dropped.
struct Claim {
    sock: Rc<Sock>,
    id: u16,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let waiting = &self.sock.counters.waiting;
        waiting.set(waiting.get() - 1);
        self.sock.pending.borrow_mut().remove(&self.id);
        self.sock.close_if_done();
    }
}

/// The receive task of one socket: every datagram to the query it answers.
async fn receive(sock: Rc<Sock>) {
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    loop {
        match sock.udp.recv_from(&mut buf).await {
            Ok((n, from)) if from == sock.server => sock.deliver(&buf[..n]),
            Ok(_) => UdpCounters::bump(&sock.counters.ignored),
            Err(e) => sock.fail_all(&e),
        }
        if sock.retired.get() && sock.pending.borrow().is_empty() {
            // Dropping our handle: nothing to abort, the task ends here.
            sock.receiver.borrow_mut().take();
            return;
        }
    }
}
