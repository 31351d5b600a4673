//! The per-worker stub resolver: a name's candidates (the search list), A and, when the
//! machine can use them, AAAA asked in parallel, each question tried across the servers
//! (`policy::Tries`) over the worker's UDP socket pools (`udp`), again over TCP when an
//! answer comes truncated (`tcp`), answers read with `wire`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use hickory_proto::rr::RecordType;

use super::conf::ResolvConf;
use super::policy::{combine, Outcome, SearchOutcome, Step, Tries, TryPlan};
use super::udp::{Renewal, ServerPool, UdpCounters};
use super::wire::{self, Answer, Question};
use super::{tcp, Families};

/// Counters of the stub (besides the transport's).
#[derive(Debug, Default)]
pub struct StubCounters {
    /// Tries after the first of a question.
    pub retries: Cell<u64>,
    /// Questions asked again over TCP.
    pub tcp_fallbacks: Cell<u64>,
}

pub struct Stub {
    conf: ResolvConf,
    pools: Vec<ServerPool>,
    /// The lookup's hard bound, which the tries of a question share.
    budget: Duration,
    /// The first server of the next question (with `options rotate`).
    rotation: Cell<usize>,
    pub udp: Rc<UdpCounters>,
    pub counters: StubCounters,
}

impl Stub {
    pub fn new(conf: ResolvConf, budget: Duration, renewal: Renewal) -> Stub {
        let udp = Rc::new(UdpCounters::default());
        let pools = conf
            .servers
            .iter()
            .map(|&server| ServerPool::new(server, renewal, udp.clone()))
            .collect();
        Stub {
            conf,
            pools,
            budget,
            rotation: Cell::new(0),
            udp,
            counters: StubCounters::default(),
        }
    }

    pub fn conf(&self) -> &ResolvConf {
        &self.conf
    }

    /// Queries waiting for an answer now (ids claimed on a socket, places in a window).
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        let windows: usize = self.pools.iter().map(ServerPool::in_flight).sum();
        self.udp.waiting.get().max(windows)
    }

    /// UDP sockets open now.
    #[cfg(test)]
    pub fn open_sockets(&self) -> usize {
        self.pools.iter().map(ServerPool::open_sockets).sum()
    }

    /// Resolve `name` (lower case, no final dot; `absolute` if written with one) through
    /// its search-list candidates.
    pub async fn resolve(&self, name: &str, absolute: bool, families: Families) -> Outcome {
        let mut search = SearchOutcome::default();
        for candidate in self.conf.candidates(name, absolute) {
            if let Some(done) = search.take(self.resolve_name(&candidate, families).await) {
                return done;
            }
        }
        search.finish()
    }

    /// One candidate: A, and AAAA if asked, at the same time.
    async fn resolve_name(&self, name: &str, families: Families) -> Outcome {
        let question =
            |qtype| Question::new(name, qtype).map_err(|e| Outcome::Failed(e.to_string()));
        let v4 = match question(RecordType::A) {
            Ok(q) => q,
            Err(failed) => return failed,
        };
        match families {
            Families::Ipv4Only => self.ask(&v4).await,
            Families::Both => {
                let v6 = match question(RecordType::AAAA) {
                    Ok(q) => q,
                    Err(failed) => return failed,
                };
                let (a, aaaa) = tokio::join!(self.ask(&v4), self.ask(&v6));
                combine(a, Some(aaaa))
            }
        }
    }

    /// One question, tried across the servers until an answer settles it.
    async fn ask(&self, q: &Question) -> Outcome {
        let first = if self.conf.rotate {
            let first = self.rotation.get();
            self.rotation.set(first.wrapping_add(1));
            first
        } else {
            0
        };
        let plan = TryPlan::new(
            self.pools.len(),
            self.conf.attempts,
            self.conf.try_timeout,
            self.budget,
            first,
        );
        let mut tries = Tries::new(plan, Instant::now());
        let mut running = FuturesUnordered::new();
        loop {
            let until = match tries.step(Instant::now(), |s| self.pools[s].rto()) {
                Step::Send(server, overdue) => {
                    if tries.sent() > 1 {
                        bump(&self.counters.retries);
                    }
                    running.push(self.attempt(server, q, overdue));
                    continue;
                }
                Step::WaitUntil(until) => until,
                Step::TimedOut => return Outcome::TimedOut,
                Step::Failed(why) => return Outcome::Failed(why),
            };
            tokio::select! {
                Some(tried) = running.next() => match tried {
                    Ok(outcome) => return outcome,
                    Err(why) => tries.failed(Instant::now(), why),
                },
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// One try at `server`: `Ok` for an answer that settles the question, `Err` why not.
    async fn attempt(
        &self,
        server: usize,
        q: &Question,
        overdue: Duration,
    ) -> Result<Outcome, String> {
        let pool = &self.pools[server];
        let edns = self.conf.edns0;
        let msg = pool.exchange(q, edns, overdue).await?;
        let mut answer = wire::interpret(&msg, q);
        if answer == Answer::Truncated {
            bump(&self.counters.tcp_fallbacks);
            let msg = Box::pin(tcp::exchange(pool.server(), q, edns)).await?;
            answer = wire::interpret(&msg, q);
        }
        match answer {
            Answer::Addresses(ips, ttl) => Ok(Outcome::Found(ips, ttl)),
            Answer::NxDomain => Ok(Outcome::NxDomain),
            Answer::NoData => Ok(Outcome::NoData),
            Answer::Truncated => Err(format!(
                "{} sent a truncated answer over TCP",
                pool.server()
            )),
            Answer::ServerError(code) => Err(format!(
                "{} answered {}",
                pool.server(),
                wire::rcode_name(code)
            )),
        }
    }
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}
