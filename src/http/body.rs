//! Body framing (Content-Length, chunked with trailers, close-delimited, none) and streaming
//! content decoding (gzip, deflate), as one sans-IO reader for a whole response.

use super::{HttpError, ResponseHead};

/// What the reader produced from the bytes fed so far.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEvent<'a> {
    /// A final (non-1xx) head was parsed. 1xx heads are skipped silently.
    Head(&'a ResponseHead),
    /// Decoded (de-chunked and decompressed) body bytes.
    Data(&'a [u8]),
    /// The response is complete; `reusable` says whether the connection may carry another
    /// request (framing was exact, no `close`, no leftover bytes beyond this response).
    End { reusable: bool },
}

/// Reads one response off a connection, byte stream in, events out.
///
/// Usage: `feed(bytes, sink)` with each chunk read from the socket (any split, down to one
/// byte); on EOF call `eof(sink)`. `sink` receives events in order. `max_body` bounds the
/// decoded body bytes delivered: past it, `Data` is truncated, and `End{reusable:false}`
/// follows (the caller decides whether that is an error). Requests made with `HEAD`, and
/// 204/304 responses, have no body.
pub struct ResponseReader {
    _private: (),
}

impl ResponseReader {
    pub fn new(max_body: u64, head_request: bool) -> Self {
        let _ = (max_body, head_request);
        todo!("http helper")
    }

    /// Feed bytes; returns how many were consumed (fewer than given only once `End` was
    /// emitted: the rest belongs to a following response, which makes the connection
    /// non-reusable for a client that did not pipeline).
    pub fn feed(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(BodyEvent<'_>),
    ) -> Result<usize, HttpError> {
        let _ = (input, sink);
        todo!("http helper")
    }

    /// The peer closed the connection. Completes a close-delimited body (emits `End`), is a
    /// protocol error anywhere else (with a message saying where: before any byte, mid-head,
    /// mid-body with N of M bytes, mid-chunk).
    pub fn eof(&mut self, sink: &mut dyn FnMut(BodyEvent<'_>)) -> Result<(), HttpError> {
        let _ = sink;
        todo!("http helper")
    }

    /// The final head, once parsed.
    pub fn head(&self) -> Option<&ResponseHead> {
        todo!("http helper")
    }

    /// `End` has been emitted.
    pub fn is_done(&self) -> bool {
        todo!("http helper")
    }
}
