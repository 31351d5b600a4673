//! Drives one [`Exchange`] over one [`Stream`]: the only request/response loop, shared by
//! `fetch` (title pages) and `load` (load tests). The exchange decides every step (read,
//! discard, done, stale); this module writes the request, performs each step under the
//! deadlines and lends read buffers only while a read is in progress, so a connection
//! waiting for its server holds none.

use std::time::{Duration, Instant};

use crate::http::{Consumer, Exchange, ExchangeError, Next};
use crate::net::{NetError, Stream};

/// Where a driver gets its read buffers from, and gives them back to.
pub trait ReadBufs {
    /// A cleared buffer for one read. `draining`: the rest of a response is read only to
    /// keep the connection (the bytes are likely there already: a larger buffer pays).
    fn take(&self, draining: bool) -> Vec<u8>;
    /// A buffer handed out by `take` (or an empty `Vec`) comes back.
    fn give(&self, buf: Vec<u8>);
}

/// How one exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The reused connection was dead before the request: retry on a new connection.
    #[error("the server had closed the kept-alive connection")]
    Stale,
    /// Writing the request failed.
    #[error("writing the request: {0}")]
    Write(NetError),
    /// Reading the response failed.
    #[error(transparent)]
    Net(NetError),
    #[error(transparent)]
    Exchange(ExchangeError),
}

impl DriveError {
    /// The journal error kind of this failure (`reset` for a stale connection).
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            DriveError::Stale => crate::error::ErrorKind::Reset,
            DriveError::Write(e) | DriveError::Net(e) => e.kind(),
            DriveError::Exchange(ExchangeError::Http(e)) => e.kind(),
            DriveError::Exchange(ExchangeError::Truncated) => crate::error::ErrorKind::Tls,
        }
    }
}

/// Time limits of one exchange.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Everything (write and every read) ends by then.
    pub deadline: Instant,
    /// Longest wait for the next byte from the server.
    pub idle: Duration,
}

/// Write `request` on `stream`, then run `ex` to its end, feeding `consumer`. Returns
/// whether the connection may carry another request, and the request buffer (cleared) for
/// reuse. Bytes read from the network are added to `bytes`, failed or not. On error the
/// caller closes the stream.
///
/// A plain function returning an `async move` block, not an `async fn`: the arguments are
/// stored once in the future, which every connection in flight carries.
#[allow(clippy::too_many_arguments, reason = "one call site per driver")]
#[allow(
    clippy::manual_async_fn,
    reason = "arguments stored once in the future"
)]
pub fn drive<'a, C: Consumer, B: ReadBufs>(
    stream: &'a mut Stream,
    request: Vec<u8>,
    ex: &'a mut Exchange,
    consumer: &'a mut C,
    bufs: &'a B,
    limits: Limits,
    bytes: &'a mut u64,
) -> impl std::future::Future<Output = (Result<bool, DriveError>, Vec<u8>)> + 'a {
    async move {
        let request = match stream.write_all(request, limits.deadline).await {
            Ok(buf) => buf,
            Err(e) => {
                let err = ex
                    .write_failed()
                    .map_or(DriveError::Write(e), |_| DriveError::Stale);
                return (Err(err), Vec::new());
            }
        };
        let mut next = ex.start();
        let mut buf = Vec::new();
        let result = loop {
            bufs.give(std::mem::take(&mut buf));
            let io_deadline = limits.deadline.min(Instant::now() + limits.idle);
            let (draining, discard) = match next {
                Next::Done { keep_alive } => break Ok(keep_alive),
                Next::Stale => break Err(DriveError::Stale),
                Next::Read { draining } => (draining, None),
                Next::Discard(n) => (true, Some(n)),
            };
            let discarded = match discard {
                Some(n) => {
                    let max = usize::try_from(n).unwrap_or(usize::MAX);
                    stream.discard(max, io_deadline).await
                }
                None => None,
            };
            let step = match discarded {
                Some(Ok(0)) => ex.closed(stream.eof_was_clean(), consumer),
                Some(Ok(n)) => {
                    *bytes += n as u64;
                    ex.discarded(n as u64, consumer)
                }
                Some(Err(e)) => break Err(read_error(ex, e)),
                // A read, or a discard this stream cannot do (TLS).
                None => {
                    let (res, b) = stream.read_ready(|| bufs.take(draining), io_deadline).await;
                    buf = b;
                    match res {
                        Ok(0) => ex.closed(stream.eof_was_clean(), consumer),
                        Ok(n) => {
                            *bytes += n as u64;
                            ex.received(&buf[..n], consumer)
                        }
                        Err(e) => break Err(read_error(ex, e)),
                    }
                }
            };
            match step {
                Ok(n) => next = n,
                Err(e) => break Err(DriveError::Exchange(e)),
            }
        };
        bufs.give(buf);
        (result, request)
    }
}

/// A failed read: staleness when the exchange says so, the network error otherwise.
fn read_error(ex: &Exchange, e: NetError) -> DriveError {
    let reset = matches!(e, NetError::Reset(_));
    ex.read_failed(reset)
        .map_or(DriveError::Net(e), |_| DriveError::Stale)
}
