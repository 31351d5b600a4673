//! One request and its response on one connection, sans-IO.
//!
//! [`Exchange`] owns everything between "the request was written" and "this connection is
//! free again or must be closed": the [`ResponseReader`], what the caller still wants of the
//! body (a [`Consumer`]), the drain budget that decides whether reading the rest of a page to
//! keep its connection is worth it, stale keep-alive detection (a reused connection the
//! server had already closed), the TLS truncation rule, and the keep-alive decision. It does
//! no I/O and reads no clock: its driver (`conn::drive`, used by `fetch` and `load`) performs
//! each [`Next`] step it asks for and reports what happened.

use super::body::{BodyEvent, ResponseReader};
use super::{HttpError, ResponseHead};

/// What a [`Consumer`] wants after a head or a piece of body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// More body, please.
    Body,
    /// It has what it wants (or never wanted the body): the rest is read only to keep the
    /// connection, within the drain budget.
    Enough,
}

/// What the caller does with a response: told about the final head and the decoded body.
pub trait Consumer {
    /// The final (non-1xx) head arrived.
    fn head(&mut self, head: &ResponseHead) -> Want;
    /// Decoded body bytes (only while the consumer wants the body).
    fn data(&mut self, bytes: &[u8]) -> Want;
}

/// How one exchange is run.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeOptions {
    /// Decoded (and encoded) body bytes read at most.
    pub max_body: u64,
    /// The request was `HEAD`: the response has no body whatever its headers say.
    pub head_request: bool,
    /// Bytes that may be read after the consumer had [`Want::Enough`], to keep the
    /// connection reusable; past that the connection is given up.
    pub drain_budget: u64,
    /// The connection carried an earlier request (so it may have been closed by the server
    /// meanwhile: see [`Next::Stale`]).
    pub reused: bool,
}

/// The driver's next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read from the connection and report with [`Exchange::received`] (or
    /// [`Exchange::closed`] at EOF). `draining`: the consumer has what it wants and the rest
    /// is read only to keep the connection (so a larger buffer pays).
    Read { draining: bool },
    /// Throw away up to this many bytes unseen and report them with
    /// [`Exchange::discarded`]. A driver that cannot (TLS records must be decrypted) reads
    /// instead.
    Discard(u64),
    /// The exchange is over: the connection may carry another request (`keep_alive`) or
    /// must be closed.
    Done { keep_alive: bool },
    /// The reused connection had been closed by the server before this request: nothing
    /// of the response came. Retry the request on a new connection.
    Stale,
}

/// Why an exchange failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The stream ended without TLS close_notify before the framing said the response was
    /// complete: it may have been cut by an attacker.
    #[error("connection closed without close_notify before the body was complete")]
    Truncated,
}

/// What the response events told us so far.
#[derive(Default)]
struct Seen {
    /// The consumer has [`Want::Enough`].
    satisfied: bool,
    /// The reader's `End` said the connection may be reused.
    reusable: bool,
}

/// One request/response on one connection (see the module docs).
pub struct Exchange {
    reader: ResponseReader,
    seen: Seen,
    reused: bool,
    /// Some response byte arrived (so the connection was alive).
    got_any: bool,
    drain_budget: u64,
    /// Bytes read or discarded after the consumer was satisfied.
    drained: u64,
}

impl Exchange {
    /// An exchange whose request has been (or is being) written.
    pub fn new(opts: ExchangeOptions) -> Exchange {
        Exchange {
            reader: ResponseReader::new(opts.max_body, opts.head_request),
            seen: Seen::default(),
            reused: opts.reused,
            got_any: false,
            drain_budget: opts.drain_budget,
            drained: 0,
        }
    }

    /// The first step, once the request is written.
    pub fn start(&self) -> Next {
        self.next()
    }

    /// Writing the request failed: on a reused connection that means it was already dead
    /// ([`Next::Stale`]); `None` means the failure is the exchange's error.
    pub fn write_failed(&self) -> Option<Next> {
        self.reused.then_some(Next::Stale)
    }

    /// A read failed; `reset`: the peer reset the connection. A reused connection reset
    /// before any response byte was stale ([`Next::Stale`]); `None` means the failure is
    /// the exchange's error.
    pub fn read_failed(&self, reset: bool) -> Option<Next> {
        (self.reused && !self.got_any && reset).then_some(Next::Stale)
    }

    /// `bytes` (not empty) arrived.
    pub fn received<C: Consumer>(
        &mut self,
        bytes: &[u8],
        consumer: &mut C,
    ) -> Result<Next, ExchangeError> {
        debug_assert!(!bytes.is_empty(), "EOF goes through `closed`");
        self.got_any = true;
        if self.seen.satisfied {
            self.drained += bytes.len() as u64;
        }
        let seen = &mut self.seen;
        self.reader
            .feed(bytes, &mut |ev| on_event(seen, consumer, ev))?;
        Ok(self.next())
    }

    /// `n` bytes of a [`Next::Discard`] were thrown away unseen (0: the peer closed, report
    /// it with [`Exchange::closed`] instead).
    pub fn discarded<C: Consumer>(
        &mut self,
        n: u64,
        consumer: &mut C,
    ) -> Result<Next, ExchangeError> {
        debug_assert!(n > 0, "EOF goes through `closed`");
        self.got_any = true;
        self.drained += n;
        let seen = &mut self.seen;
        self.reader
            .skip(n, &mut |ev| on_event(seen, consumer, ev))?;
        Ok(self.next())
    }

    /// The peer closed the connection; `clean`: with TLS close_notify (always true for
    /// plain TCP).
    pub fn closed<C: Consumer>(
        &mut self,
        clean: bool,
        consumer: &mut C,
    ) -> Result<Next, ExchangeError> {
        if self.reused && !self.got_any {
            return Ok(Next::Stale);
        }
        if !clean && !self.reader.is_done() && self.reader.head().is_some() {
            return Err(ExchangeError::Truncated);
        }
        let seen = &mut self.seen;
        self.reader.eof(&mut |ev| on_event(seen, consumer, ev))?;
        Ok(self.next())
    }

    /// The final head, once it came.
    pub fn head(&self) -> Option<&ResponseHead> {
        self.reader.head()
    }

    /// The final head, taking it out (the exchange is over).
    pub fn into_head(self) -> Option<ResponseHead> {
        self.reader.into_head()
    }

    fn next(&self) -> Next {
        if self.reader.is_done() {
            return Next::Done {
                keep_alive: self.seen.reusable,
            };
        }
        if !self.seen.satisfied {
            return Next::Read { draining: false };
        }
        if self.drained > self.drain_budget {
            return Next::Done { keep_alive: false };
        }
        // The rest of a Content-Length body is thrown away unseen when the budget covers
        // it all, and the connection given up at once when it does not.
        match self.reader.skippable() {
            0 => Next::Read { draining: true },
            n if self.drained.saturating_add(n) > self.drain_budget => {
                Next::Done { keep_alive: false }
            }
            n => Next::Discard(n),
        }
    }
}

fn on_event<C: Consumer>(seen: &mut Seen, consumer: &mut C, ev: BodyEvent<'_>) {
    match ev {
        BodyEvent::Head(head) => seen.satisfied = consumer.head(head) == Want::Enough,
        BodyEvent::Data(data) if !seen.satisfied => {
            seen.satisfied = consumer.data(data) == Want::Enough;
        }
        BodyEvent::Data(_) => {}
        BodyEvent::End { reusable } => seen.reusable = reusable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u64 = 1 << 30;

    /// Wants the body until it has seen `want` bytes of it (`None`: the whole body), or
    /// nothing of it at all (`skip`).
    #[derive(Default)]
    struct Taker {
        want: Option<usize>,
        skip: bool,
        status: Option<u16>,
        body: Vec<u8>,
    }

    impl Consumer for Taker {
        fn head(&mut self, head: &ResponseHead) -> Want {
            self.status = Some(head.status);
            if self.skip || self.want == Some(0) {
                Want::Enough
            } else {
                Want::Body
            }
        }
        fn data(&mut self, bytes: &[u8]) -> Want {
            self.body.extend_from_slice(bytes);
            match self.want {
                Some(n) if self.body.len() >= n => Want::Enough,
                _ => Want::Body,
            }
        }
    }

    fn opts(drain_budget: u64, reused: bool) -> ExchangeOptions {
        ExchangeOptions {
            max_body: BIG,
            head_request: false,
            drain_budget,
            reused,
        }
    }

    /// What a driver did: the steps asked for, and how it ended.
    #[derive(Debug, PartialEq, Eq)]
    struct Run {
        steps: Vec<Next>,
        end: Result<Next, ExchangeError>,
        /// Bytes handed to the exchange (read or discarded).
        taken: usize,
    }

    /// Drive `ex` over `wire` (then EOF, `clean` or not) like a driver would: reads of at
    /// most `chunk` bytes, discards when asked (`can_discard`: plain TCP can, TLS cannot).
    fn drive(
        ex: &mut Exchange,
        taker: &mut Taker,
        wire: &[u8],
        chunk: usize,
        can_discard: bool,
        clean: bool,
    ) -> Run {
        let mut pos = 0;
        let mut steps = Vec::new();
        let mut next = ex.start();
        let end = loop {
            steps.push(next);
            let step = match next {
                Next::Done { .. } | Next::Stale => break Ok(next),
                Next::Discard(n) if can_discard => {
                    let n = (n as usize).min(wire.len() - pos).min(chunk);
                    pos += n;
                    if n == 0 {
                        ex.closed(clean, taker)
                    } else {
                        ex.discarded(n as u64, taker)
                    }
                }
                Next::Read { .. } | Next::Discard(_) => {
                    let n = chunk.min(wire.len() - pos);
                    let piece = &wire[pos..pos + n];
                    pos += n;
                    if n == 0 {
                        ex.closed(clean, taker)
                    } else {
                        ex.received(piece, taker)
                    }
                }
            };
            match step {
                Ok(n) => next = n,
                Err(e) => break Err(e),
            }
        };
        Run {
            steps,
            end,
            taken: pos,
        }
    }

    fn run(wire: &[u8], chunk: usize, o: ExchangeOptions, t: Taker, discard: bool) -> (Run, Taker) {
        let mut ex = Exchange::new(o);
        let mut t = t;
        let r = drive(&mut ex, &mut t, wire, chunk, discard, true);
        (r, t)
    }

    fn page(body_len: usize) -> Vec<u8> {
        let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
        v.extend(std::iter::repeat_n(b'x', body_len));
        v
    }

    fn chunked(chunks: usize, size: usize) -> Vec<u8> {
        let mut v = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..chunks {
            v.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            v.extend(std::iter::repeat_n(b'y', size));
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n\r\n");
        v
    }

    #[test]
    fn a_whole_response_ends_with_keep_alive_whatever_the_split() {
        let wire = page(300);
        for chunk in [1, 7, wire.len()] {
            let (r, t) = run(&wire, chunk, opts(0, false), Taker::default(), true);
            assert_eq!(r.end, Ok(Next::Done { keep_alive: true }), "chunk {chunk}");
            assert_eq!(t.body.len(), 300);
            assert_eq!(r.taken, wire.len());
            assert!(r.steps[..r.steps.len() - 1]
                .iter()
                .all(|s| *s == Next::Read { draining: false }));
        }
    }

    #[test]
    fn the_rest_of_a_length_body_is_discarded_within_the_budget() {
        let wire = page(10_000);
        let head_len = wire.len() - 10_000;
        let t = Taker {
            want: Some(100),
            ..Taker::default()
        };
        // The first read brings the head and 100 body bytes: the rest is thrown away.
        let (r, t) = run(&wire, head_len + 100, opts(64 * 1024, false), t, true);
        assert_eq!(t.body.len(), 100);
        assert_eq!(r.steps[1], Next::Discard(9_900));
        assert_eq!(r.end, Ok(Next::Done { keep_alive: true }));
        assert_eq!(r.taken, wire.len());
    }

    #[test]
    fn a_rest_beyond_the_budget_gives_up_the_connection_at_once() {
        let wire = page(100_000);
        let head_len = wire.len() - 100_000;
        let t = Taker {
            want: Some(10),
            ..Taker::default()
        };
        let (r, _) = run(&wire, head_len + 10, opts(64 * 1024, false), t, true);
        assert_eq!(r.steps.len(), 2, "{:?}", r.steps);
        assert_eq!(r.end, Ok(Next::Done { keep_alive: false }));
        assert_eq!(r.taken, head_len + 10, "nothing read past what was wanted");
    }

    #[test]
    fn tls_cannot_discard_so_it_reads_while_draining() {
        let wire = page(5_000);
        let head_len = wire.len() - 5_000;
        let t = Taker {
            want: Some(1),
            ..Taker::default()
        };
        let mut ex = Exchange::new(opts(64 * 1024, false));
        let mut t = t;
        let r = drive(&mut ex, &mut t, &wire, head_len + 1, false, true);
        assert_eq!(r.end, Ok(Next::Done { keep_alive: true }));
        assert_eq!(r.taken, wire.len());
        // Asked to discard, the driver read instead, and that counted against the budget.
        assert_eq!(r.steps[1], Next::Discard(4_999));
    }

    #[test]
    fn a_chunked_body_is_drained_until_the_budget_runs_out() {
        let wire = chunked(100, 1000);
        let t = Taker {
            want: Some(1),
            ..Taker::default()
        };
        let (r, _) = run(&wire, 512, opts(4 * 1024, false), t, true);
        assert_eq!(r.end, Ok(Next::Done { keep_alive: false }));
        assert!(
            r.steps.contains(&Next::Read { draining: true }),
            "{:?}",
            r.steps
        );
        // Satisfied within the first read; then more than 4 KiB, read 512 bytes at a time.
        assert!(
            r.taken > 4 * 1024 && r.taken <= 4 * 1024 + 2 * 512,
            "{}",
            r.taken
        );
        let (r, _) = run(
            &wire,
            512,
            opts(BIG, false),
            Taker {
                want: Some(1),
                ..Taker::default()
            },
            true,
        );
        assert_eq!(r.end, Ok(Next::Done { keep_alive: true }));
        assert_eq!(r.taken, wire.len());
    }

    #[test]
    fn a_body_not_wanted_is_not_read_past_the_budget() {
        // A 10 MB body the consumer does not want (not HTML): given up at the head.
        let mut wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec();
        let head_len = wire.len();
        wire.extend(std::iter::repeat_n(b'z', 1000));
        let t = Taker {
            skip: true,
            ..Taker::default()
        };
        let (r, t) = run(&wire, head_len, opts(64 * 1024, false), t, true);
        assert_eq!(r.end, Ok(Next::Done { keep_alive: false }));
        assert!(t.body.is_empty());
        assert_eq!(r.taken, head_len);
        // A small one is thrown away and the connection kept.
        let wire = page(2_000);
        let t = Taker {
            skip: true,
            ..Taker::default()
        };
        let (r, t) = run(&wire, 10, opts(64 * 1024, false), t, true);
        assert_eq!(r.end, Ok(Next::Done { keep_alive: true }));
        assert!(t.body.is_empty());
    }

    #[test]
    fn a_reused_connection_closed_or_reset_before_any_byte_is_stale() {
        let mut t = Taker::default();
        let ex = Exchange::new(opts(0, true));
        assert_eq!(ex.write_failed(), Some(Next::Stale));
        assert_eq!(ex.read_failed(true), Some(Next::Stale));
        assert_eq!(ex.read_failed(false), None, "a timeout is not staleness");
        let mut ex = Exchange::new(opts(0, true));
        assert_eq!(ex.closed(true, &mut t), Ok(Next::Stale));

        // A fresh connection doing the same is the exchange's failure.
        let mut ex = Exchange::new(opts(0, false));
        assert_eq!(ex.write_failed(), None);
        assert_eq!(ex.read_failed(true), None);
        assert!(matches!(
            ex.closed(true, &mut t),
            Err(ExchangeError::Http(HttpError::ClosedBeforeHead(m))) if m.contains("before any response byte")
        ));

        // Once a byte came, the connection was alive: a reset or EOF is an error.
        let mut ex = Exchange::new(opts(0, true));
        assert_eq!(
            ex.received(b"HTTP/1.1 200", &mut t),
            Ok(Next::Read { draining: false })
        );
        assert_eq!(ex.read_failed(true), None);
        assert!(matches!(
            ex.closed(true, &mut t),
            Err(ExchangeError::Http(HttpError::ClosedBeforeHead(m))) if m.contains("mid-head")
        ));
    }

    #[test]
    fn tls_eof_without_close_notify_before_the_end_is_truncation() {
        let wire = page(1000);
        let mut ex = Exchange::new(opts(0, false));
        let mut t = Taker::default();
        let r = drive(&mut ex, &mut t, &wire[..wire.len() - 10], 64, true, false);
        assert_eq!(r.end, Err(ExchangeError::Truncated));
        // A close-delimited body needs close_notify to be known complete.
        let wire = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let mut ex = Exchange::new(opts(0, false));
        let r = drive(&mut ex, &mut Taker::default(), wire, 64, true, false);
        assert_eq!(r.end, Err(ExchangeError::Truncated));
        // With it, the body ends at EOF and the connection is not reused.
        let mut ex = Exchange::new(opts(0, false));
        let mut t = Taker::default();
        let r = drive(&mut ex, &mut t, wire, 64, true, true);
        assert_eq!(r.end, Ok(Next::Done { keep_alive: false }));
        assert_eq!(t.body, b"all of it");
        // Before any head, a dirty EOF is the plain protocol error.
        let mut ex = Exchange::new(opts(0, false));
        assert!(matches!(
            ex.closed(false, &mut Taker::default()),
            Err(ExchangeError::Http(_))
        ));
    }

    #[test]
    fn a_head_request_ends_at_the_head() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
        let o = ExchangeOptions {
            head_request: true,
            ..opts(0, false)
        };
        for chunk in [1, wire.len()] {
            let (r, t) = run(wire, chunk, o, Taker::default(), true);
            assert_eq!(r.end, Ok(Next::Done { keep_alive: true }));
            assert_eq!(t.status, Some(200));
        }
    }

    #[test]
    fn the_body_limit_ends_the_exchange_without_keep_alive() {
        let wire = page(10_000);
        let o = ExchangeOptions {
            max_body: 1000,
            ..opts(BIG, false)
        };
        let (r, t) = run(&wire, 4096, o, Taker::default(), true);
        assert_eq!(r.end, Ok(Next::Done { keep_alive: false }));
        assert_eq!(t.body.len(), 1000);
    }

    #[test]
    fn errors_come_back_as_they_are_and_the_head_is_kept() {
        let mut ex = Exchange::new(opts(0, false));
        let mut t = Taker::default();
        assert!(matches!(
            ex.received(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", &mut t),
            Err(ExchangeError::Http(HttpError::Protocol(_)))
        ));
        let mut ex = Exchange::new(opts(0, false));
        let next = ex.received(&page(3), &mut t).unwrap();
        assert_eq!(next, Next::Done { keep_alive: true });
        assert_eq!(ex.head().map(|h| h.status), Some(200));
        assert_eq!(ex.into_head().map(|h| h.content_length), Some(Some(3)));
    }
}
