//! Body framing (Content-Length, chunked with trailers, close-delimited, none) and streaming
//! content decoding (gzip, deflate), as one sans-IO reader for a whole response.
//!
//! [`ResponseReader`] owns everything between the first response byte and `End`: collecting
//! the head (skipping 1xx heads), choosing the framing, de-chunking, decoding and the body
//! limit. It never buffers a body: decoded bytes are handed out as they are produced.

use super::decode::Decoder;
use super::response::parse_head;
use super::{HttpError, ResponseHead, MAX_HEAD_BYTES};

/// Longest chunk-size line accepted (size, extensions and line ending).
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest chunked trailer section accepted (all trailer lines and the final empty line).
pub const MAX_TRAILER_BYTES: usize = MAX_HEAD_BYTES;
/// Most informational (1xx) heads skipped before a final head.
pub const MAX_INFORMATIONAL: usize = 16;

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
///
/// `max_body` also bounds the encoded body bytes read (chunk data before decoding), so a
/// compressed stream that decodes to nothing cannot be read forever; the cut happens only
/// when a byte beyond the limit is actually present, so a body of exactly `max_body` bytes
/// ends normally. Once an error is returned the reader is failed: every later call returns
/// the same error. A gzip/deflate stream cut short by the end of the body is accepted;
/// corrupt compressed data is an error.
///
/// `End.reusable` is decided when `End` is emitted: bytes fed in the same call after the
/// response make it `false`; bytes fed in a later call are not consumed (`feed` returns 0)
/// and the caller must then not reuse the connection either.
pub struct ResponseReader {
    max_body: u64,
    head_request: bool,
    state: State,
    /// Bytes of the head being collected (at most [`MAX_HEAD_BYTES`]).
    head_buf: Vec<u8>,
    /// Where the search for the head's terminating empty line resumes in `head_buf`.
    head_scan: usize,
    /// The status line of the head being collected was validated.
    first_line_checked: bool,
    /// Leading empty-line bytes skipped before the current head.
    head_skipped: usize,
    informational: usize,
    any_byte: bool,
    head: Option<ResponseHead>,
    decoder: Decoder,
    /// Encoded body bytes taken so far (never above `max_body`).
    wire: u64,
    /// Decoded body bytes delivered so far (never above `max_body`).
    delivered: u64,
}

enum State {
    Head,
    Length {
        remaining: u64,
        total: u64,
    },
    Chunked(Chunk),
    UntilClose,
    /// `End` is due, emitted by the feed loop once it knows whether bytes follow.
    Finishing {
        reusable: bool,
    },
    Done,
    Failed(HttpError),
}

/// Position inside chunked framing; `line` counts bytes of the current size line and
/// `trailer` bytes of the trailer section.
#[derive(Clone, Copy)]
enum Chunk {
    Size {
        value: u64,
        digits: u32,
        line: usize,
    },
    /// After the size digits: optional whitespace before `;` or the line end.
    SizeWs {
        value: u64,
        line: usize,
    },
    /// Inside chunk extensions, skipped up to the line end.
    Ext {
        value: u64,
        line: usize,
    },
    /// Saw CR ending the size line, LF must follow.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    /// Chunk data done, CRLF (or a bare LF) must follow.
    DataCr,
    DataLf,
    TrailerStart {
        trailer: usize,
    },
    TrailerLine {
        trailer: usize,
    },
    TrailerCr,
}

fn protocol(msg: &str) -> HttpError {
    HttpError::Protocol(msg.to_owned())
}

fn bad_chunk_size() -> HttpError {
    protocol("bad chunk size")
}

impl ResponseReader {
    pub fn new(max_body: u64, head_request: bool) -> Self {
        ResponseReader {
            max_body,
            head_request,
            state: State::Head,
            head_buf: Vec::new(),
            head_scan: 1,
            first_line_checked: false,
            head_skipped: 0,
            informational: 0,
            any_byte: false,
            head: None,
            decoder: Decoder::new(None),
            wire: 0,
            delivered: 0,
        }
    }

    /// Feed bytes; returns how many were consumed (fewer than given only once `End` was
    /// emitted: the rest belongs to a following response, which makes the connection
    /// non-reusable for a client that did not pipeline).
    pub fn feed(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(BodyEvent<'_>),
    ) -> Result<usize, HttpError> {
        match &self.state {
            State::Failed(e) => return Err(e.clone()),
            State::Done => return Ok(0),
            _ => {}
        }
        self.run(input, sink)
            .inspect_err(|e| self.state = State::Failed(e.clone()))
    }

    fn run(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(BodyEvent<'_>),
    ) -> Result<usize, HttpError> {
        let mut pos = 0;
        loop {
            if let State::Finishing { reusable } = self.state {
                self.state = State::Done;
                sink(BodyEvent::End {
                    reusable: reusable && pos == input.len(),
                });
                return Ok(pos);
            }
            if pos == input.len() {
                return Ok(pos);
            }
            let rest = &input[pos..];
            pos += match self.state {
                State::Head => self.step_head(rest, sink)?,
                State::Length { remaining, total } => {
                    let want = remaining.min(rest.len() as u64) as usize;
                    let (taken, cut) = self.body_bytes(&rest[..want], sink)?;
                    let remaining = remaining - taken as u64;
                    self.state = if cut {
                        State::Finishing { reusable: false }
                    } else if remaining == 0 {
                        self.finish_body(sink)?
                    } else {
                        State::Length { remaining, total }
                    };
                    taken
                }
                State::Chunked(chunk) => self.step_chunked(chunk, rest, sink)?,
                State::UntilClose => {
                    let (taken, cut) = self.body_bytes(rest, sink)?;
                    if cut {
                        self.state = State::Finishing { reusable: false };
                    }
                    taken
                }
                State::Finishing { .. } | State::Done | State::Failed(_) => 0,
            };
        }
    }

    /// Collect head bytes; on a complete head, skip it if 1xx or start the body.
    fn step_head(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(BodyEvent<'_>),
    ) -> Result<usize, HttpError> {
        self.any_byte = true;
        let mut skipped = 0;
        if self.head_buf.is_empty() {
            skipped = input
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            self.head_skipped += skipped;
            if self.head_skipped > MAX_HEAD_BYTES {
                return Err(HttpError::TooLarge(format!(
                    "response head larger than {MAX_HEAD_BYTES} bytes"
                )));
            }
            if skipped == input.len() {
                return Ok(skipped);
            }
        }
        let input = &input[skipped..];
        let old = self.head_buf.len();
        if old == 0 {
            // The usual case: the whole head came in one read. Parse it where it is.
            let window = &input[..input.len().min(MAX_HEAD_BYTES)];
            if let Some(end) = head_end(window, 1) {
                if !window.starts_with(b"HTTP/") {
                    return Err(protocol("bad status line"));
                }
                let head = match parse_head(&window[..end])? {
                    Some((head, len)) if len == end => head,
                    _ => return Err(protocol("malformed response head")),
                };
                return self.head_parsed(head, skipped + end, sink);
            }
        }
        let take = input.len().min(MAX_HEAD_BYTES - old);
        self.head_buf.extend_from_slice(&input[..take]);

        let prefix = b"HTTP/";
        let checked = old.min(prefix.len());
        let upto = self.head_buf.len().min(prefix.len());
        if self.head_buf[checked..upto] != prefix[checked..upto] {
            return Err(protocol("bad status line"));
        }
        if !self.first_line_checked {
            if let Some(nl) = self.head_buf[old..].iter().position(|&b| b == b'\n') {
                self.first_line_checked = true;
                // Only the status line: complete it cannot be, but it can be malformed.
                parse_head(&self.head_buf[..=old + nl])?;
            }
        }
        let Some(end) = self.find_head_end() else {
            if self.head_buf.len() >= MAX_HEAD_BYTES {
                return Err(HttpError::TooLarge(format!(
                    "response head larger than {MAX_HEAD_BYTES} bytes"
                )));
            }
            return Ok(skipped + take);
        };
        let head = match parse_head(&self.head_buf[..end])? {
            Some((head, len)) if len == end => head,
            _ => return Err(protocol("malformed response head")),
        };
        let consumed = skipped + end - old;
        self.head_buf.clear();
        self.head_parsed(head, consumed, sink)
    }

    /// A complete head was parsed (`consumed` input bytes were its): skip it if 1xx, else
    /// choose the body framing and emit it.
    fn head_parsed(
        &mut self,
        head: ResponseHead,
        consumed: usize,
        sink: &mut dyn FnMut(BodyEvent<'_>),
    ) -> Result<usize, HttpError> {
        self.head_scan = 1;
        self.first_line_checked = false;
        self.head_skipped = 0;
        if head.status == 101 {
            return Err(protocol("unexpected 101 Switching Protocols"));
        }
        if head.status < 200 {
            self.informational += 1;
            if self.informational > MAX_INFORMATIONAL {
                return Err(protocol(&format!(
                    "more than {MAX_INFORMATIONAL} informational (1xx) responses"
                )));
            }
            return Ok(consumed);
        }
        self.decoder = Decoder::new(head.content_encoding.as_deref());
        let reusable = !head.close;
        self.state = if self.head_request || !head.status_has_body() {
            State::Finishing { reusable }
        } else if head.chunked {
            State::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
                line: 0,
            })
        } else {
            match head.content_length {
                Some(0) => State::Finishing { reusable },
                Some(n) => State::Length {
                    remaining: n,
                    total: n,
                },
                None => State::UntilClose,
            }
        };
        sink(BodyEvent::Head(self.head.insert(head)));
        Ok(consumed)
    }

    /// Index just past the empty line ending the head, if it arrived. The search resumes
    /// where it stopped, so feeding byte by byte stays linear.
    fn find_head_end(&mut self) -> Option<usize> {
        let found = head_end(&self.head_buf, self.head_scan);
        if found.is_none() {
            self.head_scan = self.head_buf.len();
        }
        found
    }

    /// Chunked framing: data runs in bulk, framing bytes one at a time.
    fn step_chunked(
        &mut self,
        chunk: Chunk,
        input: &[u8],
        sink: &mut dyn FnMut(BodyEvent<'_>),
    ) -> Result<usize, HttpError> {
        if let Chunk::Data { remaining } = chunk {
            let want = remaining.min(input.len() as u64) as usize;
            let (taken, cut) = self.body_bytes(&input[..want], sink)?;
            let remaining = remaining - taken as u64;
            self.state = if cut {
                State::Finishing { reusable: false }
            } else if remaining == 0 {
                State::Chunked(Chunk::DataCr)
            } else {
                State::Chunked(Chunk::Data { remaining })
            };
            return Ok(taken);
        }
        let mut c = chunk;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            c = match c {
                Chunk::Size {
                    value,
                    digits,
                    line,
                } => {
                    check_chunk_line(line)?;
                    if let Some(d) = (b as char).to_digit(16) {
                        let value = value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(d)))
                            .ok_or_else(bad_chunk_size)?;
                        Chunk::Size {
                            value,
                            digits: digits + 1,
                            line: line + 1,
                        }
                    } else if digits == 0 {
                        return Err(bad_chunk_size());
                    } else {
                        size_line_byte(b, value, line)?
                    }
                }
                Chunk::SizeWs { value, line } => {
                    check_chunk_line(line)?;
                    size_line_byte(b, value, line)?
                }
                Chunk::Ext { value, line } => {
                    check_chunk_line(line)?;
                    match b {
                        b'\r' => Chunk::SizeLf { value },
                        b'\n' => size_line_end(value),
                        _ => Chunk::Ext {
                            value,
                            line: line + 1,
                        },
                    }
                }
                Chunk::SizeLf { value } if b == b'\n' => size_line_end(value),
                Chunk::SizeLf { .. } => return Err(bad_chunk_size()),
                Chunk::Data { .. } => unreachable!("chunk data is handled in bulk above"),
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataCr | Chunk::DataLf if b == b'\n' => Chunk::Size {
                    value: 0,
                    digits: 0,
                    line: 0,
                },
                Chunk::DataCr | Chunk::DataLf => {
                    return Err(protocol("missing CRLF after chunk data"))
                }
                Chunk::TrailerStart { trailer } | Chunk::TrailerLine { trailer }
                    if trailer >= MAX_TRAILER_BYTES =>
                {
                    return Err(HttpError::TooLarge(format!(
                        "chunked trailers larger than {MAX_TRAILER_BYTES} bytes"
                    )))
                }
                Chunk::TrailerStart { trailer } => match b {
                    b'\r' => Chunk::TrailerCr,
                    b'\n' => {
                        self.state = self.finish_body(sink)?;
                        return Ok(i);
                    }
                    _ => Chunk::TrailerLine {
                        trailer: trailer + 1,
                    },
                },
                Chunk::TrailerLine { trailer } => match b {
                    b'\n' => Chunk::TrailerStart {
                        trailer: trailer + 1,
                    },
                    _ => Chunk::TrailerLine {
                        trailer: trailer + 1,
                    },
                },
                Chunk::TrailerCr if b == b'\n' => {
                    self.state = self.finish_body(sink)?;
                    return Ok(i);
                }
                Chunk::TrailerCr => return Err(protocol("bad line ending after chunked trailers")),
            };
            if let Chunk::Data { .. } = c {
                break;
            }
        }
        self.state = State::Chunked(c);
        Ok(i)
    }

    /// Hand encoded body bytes to the decoder under the body limit. Returns the bytes taken
    /// and whether the limit cut the body.
    fn body_bytes(
        &mut self,
        data: &[u8],
        sink: &mut dyn FnMut(BodyEvent<'_>),
    ) -> Result<(usize, bool), HttpError> {
        let room = self.max_body - self.wire;
        let over = data.len() as u64 > room;
        let data = if over { &data[..room as usize] } else { data };
        self.wire += data.len() as u64;
        let (max_body, delivered) = (self.max_body, &mut self.delivered);
        let go_on = self
            .decoder
            .decode(data, &mut |out| deliver(out, max_body, delivered, sink))?;
        Ok((data.len(), over || !go_on))
    }

    /// The framing says the body is complete: flush the decoder, then `End` is due.
    fn finish_body(&mut self, sink: &mut dyn FnMut(BodyEvent<'_>)) -> Result<State, HttpError> {
        let (max_body, delivered) = (self.max_body, &mut self.delivered);
        let go_on = self
            .decoder
            .finish(&mut |out| deliver(out, max_body, delivered, sink))?;
        let close = self.head.as_ref().is_none_or(|h| h.close);
        Ok(State::Finishing {
            reusable: go_on && !close,
        })
    }

    /// The peer closed the connection. Completes a close-delimited body (emits `End`), is a
    /// protocol error anywhere else (with a message saying where: before any byte, mid-head,
    /// mid-body with N of M bytes, mid-chunk).
    pub fn eof(&mut self, sink: &mut dyn FnMut(BodyEvent<'_>)) -> Result<(), HttpError> {
        let result = match self.state {
            State::Done => return Ok(()),
            State::Failed(ref e) => return Err(e.clone()),
            State::Head if !self.any_byte => Err(HttpError::ClosedBeforeHead(
                "connection closed before any response byte",
            )),
            State::Head => Err(HttpError::ClosedBeforeHead("connection closed mid-head")),
            State::Length { remaining, total } => Err(protocol(&format!(
                "body ended after {} of {total} bytes (connection closed)",
                total - remaining
            ))),
            State::Chunked(
                Chunk::TrailerStart { .. } | Chunk::TrailerLine { .. } | Chunk::TrailerCr,
            ) => self.finish_body(sink).map(|_| ()),
            State::Chunked(_) => Err(protocol("connection closed mid-chunk")),
            State::UntilClose => self.finish_body(sink).map(|_| ()),
            // `run` always emits a due `End` before returning.
            State::Finishing { .. } => Ok(()),
        };
        match result {
            Ok(()) => {
                self.state = State::Done;
                sink(BodyEvent::End { reusable: false });
                Ok(())
            }
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The final head, once parsed.
    pub fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// The final head, taking it out of a reader that is no longer needed.
    pub fn into_head(self) -> Option<ResponseHead> {
        self.head
    }

    /// `End` has been emitted.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Body bytes that may be skipped unseen with [`ResponseReader::skip`]: the rest of a
    /// Content-Length body without content coding (0 for every other framing or state).
    pub fn skippable(&self) -> u64 {
        match self.state {
            State::Length { remaining, .. } if self.decoder.is_identity() => {
                remaining.min(self.max_body - self.wire)
            }
            _ => 0,
        }
    }

    /// Account for `n` (at most [`ResponseReader::skippable`]) body bytes the caller
    /// discarded without reading them: framing advances, no `Data` is emitted, and `End`
    /// comes when the body is complete.
    pub fn skip(&mut self, n: u64, sink: &mut dyn FnMut(BodyEvent<'_>)) -> Result<(), HttpError> {
        let n = n.min(self.skippable());
        let State::Length { remaining, total } = self.state else {
            return Ok(());
        };
        self.wire += n;
        let remaining = remaining - n;
        self.state = if remaining == 0 {
            self.finish_body(sink)?
        } else {
            State::Length { remaining, total }
        };
        // Emit `End` now that the body is complete (nothing follows in this call).
        self.run(&[], sink).map(|_| ())
    }
}

/// Index just past the empty line (LF LF or LF CR LF) that ends a head in `buf`, searching
/// from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.max(1);
    memchr::memchr_iter(b'\n', buf.get(from..)?)
        .map(|i| from + i)
        .find(|&j| buf[j - 1] == b'\n' || (buf[j - 1] == b'\r' && j >= 2 && buf[j - 2] == b'\n'))
        .map(|j| j + 1)
}

fn check_chunk_line(line: usize) -> Result<(), HttpError> {
    if line >= MAX_CHUNK_LINE {
        return Err(HttpError::TooLarge(format!(
            "chunk size line longer than {MAX_CHUNK_LINE} bytes"
        )));
    }
    Ok(())
}

/// A byte after the size digits: whitespace, the start of extensions or the line end.
fn size_line_byte(b: u8, value: u64, line: usize) -> Result<Chunk, HttpError> {
    Ok(match b {
        b' ' | b'\t' => Chunk::SizeWs {
            value,
            line: line + 1,
        },
        b';' => Chunk::Ext {
            value,
            line: line + 1,
        },
        b'\r' => Chunk::SizeLf { value },
        b'\n' => size_line_end(value),
        _ => return Err(bad_chunk_size()),
    })
}

fn size_line_end(value: u64) -> Chunk {
    if value == 0 {
        Chunk::TrailerStart { trailer: 0 }
    } else {
        Chunk::Data { remaining: value }
    }
}

/// Deliver decoded bytes up to `max_body`; `false` once the limit cut them.
fn deliver(
    out: &[u8],
    max_body: u64,
    delivered: &mut u64,
    sink: &mut dyn FnMut(BodyEvent<'_>),
) -> bool {
    let room = max_body - *delivered;
    let (out, fits) = if out.len() as u64 > room {
        (&out[..room as usize], false)
    } else {
        (out, true)
    };
    if !out.is_empty() {
        *delivered += out.len() as u64;
        sink(BodyEvent::Data(out));
    }
    fits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::decode::OUT_CHUNK;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::{Compression, Crc};
    use std::io::Write;

    /// `head_end` finds the same end as a byte-by-byte search, from every start.
    #[test]
    fn head_end_matches_a_byte_by_byte_search() {
        fn naive(buf: &[u8], from: usize) -> Option<usize> {
            (from.max(1)..buf.len())
                .find(|&j| {
                    buf[j] == b'\n'
                        && (buf[j - 1] == b'\n'
                            || (buf[j - 1] == b'\r' && j >= 2 && buf[j - 2] == b'\n'))
                })
                .map(|j| j + 1)
        }
        let cases: [&[u8]; 9] = [
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody\n\n",
            b"HTTP/1.1 200 OK\nA: b\n\nbody",
            b"\n\n",
            b"\r\n\r\n",
            b"\n\r\n",
            b"x\r\r\n\n",
            b"no end\r\n",
            b"",
            b"\n",
        ];
        for buf in cases {
            for from in 0..=buf.len() + 1 {
                assert_eq!(head_end(buf, from), naive(buf, from), "{buf:?} from {from}");
            }
        }
    }

    const BIG: u64 = 1 << 30;

    /// Everything a reader made of one input, independent of how it was split.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Outcome {
        head: Option<ResponseHead>,
        body: Vec<u8>,
        /// `Some(reusable)` once `End` came, `false` if input was left unconsumed.
        end: Option<bool>,
        error: Option<HttpError>,
        /// Largest single `Data` event (bounded output per step).
        max_event: usize,
    }

    /// Feed `input` in pieces ending at `cuts` (then the rest), then EOF unless done.
    fn run_pieces(input: &[u8], cuts: &[usize], max_body: u64, head_req: bool) -> Outcome {
        let mut reader = ResponseReader::new(max_body, head_req);
        let mut out = Outcome {
            head: None,
            body: Vec::new(),
            end: None,
            error: None,
            max_event: 0,
        };
        let mut consumed = 0;
        let mut bounds: Vec<usize> = cuts.to_vec();
        bounds.push(input.len());
        let mut start = 0;
        {
            let mut sink = |ev: BodyEvent<'_>| {
                assert!(out.end.is_none(), "event after End: {ev:?}");
                match ev {
                    BodyEvent::Head(h) => {
                        assert!(out.head.is_none(), "second Head");
                        out.head = Some(h.clone());
                    }
                    BodyEvent::Data(d) => {
                        assert!(out.head.is_some(), "Data before Head");
                        assert!(!d.is_empty(), "empty Data event");
                        out.max_event = out.max_event.max(d.len());
                        out.body.extend_from_slice(d);
                    }
                    BodyEvent::End { reusable } => {
                        assert!(out.head.is_some(), "End before Head");
                        out.end = Some(reusable);
                    }
                }
            };
            for &end in &bounds {
                let piece = &input[start..end];
                start = end;
                match reader.feed(piece, &mut sink) {
                    Ok(n) => {
                        assert!(n <= piece.len());
                        assert!(
                            n == piece.len() || reader.is_done(),
                            "short feed without End"
                        );
                        consumed += n;
                    }
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                }
            }
            if out.error.is_none() && !reader.is_done() {
                if let Err(e) = reader.eof(&mut sink) {
                    out.error = Some(e);
                }
            }
        }
        if out.error.is_some() {
            assert!(!reader.is_done());
            // A failed reader stays failed.
            assert_eq!(reader.feed(b"x", &mut |_| {}).err(), out.error);
        } else {
            assert!(reader.is_done());
            assert_eq!(reader.head(), out.head.as_ref());
            assert_eq!(reader.feed(b"more", &mut |_| {}), Ok(0));
            out.end = out.end.map(|r| r && consumed == input.len());
        }
        out.max_event = out.max_event.min(OUT_CHUNK + 1);
        out
    }

    /// Run `input` whole, one byte at a time and in a few fixed strides; all must agree.
    fn check_with(input: &[u8], max_body: u64, head_req: bool) -> Outcome {
        let whole = run_pieces(input, &[], max_body, head_req);
        let bytewise: Vec<usize> = (1..input.len()).collect();
        let one = run_pieces(input, &bytewise, max_body, head_req);
        assert_eq!(
            Outcome {
                max_event: 0,
                ..whole.clone()
            },
            Outcome {
                max_event: 0,
                ..one
            },
            "whole vs one byte at a time"
        );
        for stride in [2, 3, 7, 64] {
            let cuts: Vec<usize> = (stride..input.len()).step_by(stride).collect();
            let split = run_pieces(input, &cuts, max_body, head_req);
            assert_eq!(
                Outcome {
                    max_event: 0,
                    ..whole.clone()
                },
                Outcome {
                    max_event: 0,
                    ..split
                },
                "whole vs stride {stride}"
            );
        }
        whole
    }

    fn check(input: &[u8]) -> Outcome {
        check_with(input, BIG, false)
    }

    fn ok_body(input: &[u8], body: &[u8], reusable: bool) -> Outcome {
        let out = check(input);
        assert_eq!(out.error, None);
        assert_eq!(
            String::from_utf8_lossy(&out.body),
            String::from_utf8_lossy(body)
        );
        assert_eq!(out.end, Some(reusable));
        out
    }

    fn protocol_err(input: &[u8]) -> String {
        match check(input).error {
            Some(HttpError::Protocol(m)) => m,
            Some(HttpError::ClosedBeforeHead(m)) => m.to_string(),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    fn too_large_err(input: &[u8]) -> String {
        match check(input).error {
            Some(HttpError::TooLarge(m)) => m,
            other => panic!("expected too_large, got {other:?}"),
        }
    }

    fn with_body(head: &str, body: &[u8]) -> Vec<u8> {
        let mut v = head.as_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn chunked(body: &[u8], size: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for c in body.chunks(size) {
            v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            v.extend_from_slice(c);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n\r\n");
        v
    }

    fn page(n: usize) -> Vec<u8> {
        let mut v = b"<html><head><title>T</title></head><body>".to_vec();
        let mut i = 0u32;
        while v.len() < n {
            v.extend_from_slice(format!("<p>line {i} of the page</p>\n").as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    // ---- skipping the rest of a body ----

    #[test]
    fn skip_completes_a_length_body_without_data() {
        let mut r = ResponseReader::new(1 << 20, false);
        let mut ev = Vec::new();
        let mut sink = |e: BodyEvent<'_>| {
            ev.push(match e {
                BodyEvent::Head(h) => format!("head {}", h.status),
                BodyEvent::Data(d) => format!("data {}", d.len()),
                BodyEvent::End { reusable } => format!("end {reusable}"),
            })
        };
        let n = r
            .feed(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123",
                &mut sink,
            )
            .unwrap();
        assert_eq!(n, 43);
        assert_eq!(r.skippable(), 6);
        r.skip(4, &mut sink).unwrap();
        assert_eq!(r.skippable(), 2);
        assert!(!r.is_done());
        r.skip(100, &mut sink).unwrap(); // capped at what is left
        assert!(r.is_done());
        assert_eq!(r.skippable(), 0);
        assert_eq!(ev, ["head 200", "data 4", "end true"]);
    }

    /// Any mix of feeding and skipping the body ends at the same byte, with the same `End`,
    /// and never accepts more than the body (what follows is left unconsumed).
    #[test]
    fn skip_and_feed_mixed_end_where_feeding_ends() {
        const BODY: usize = 5000;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize + 1
        };
        for _ in 0..200 {
            let mut r = ResponseReader::new(1 << 20, false);
            let mut ends = Vec::new();
            let mut data = 0usize;
            let mut sink = |e: BodyEvent<'_>| match e {
                BodyEvent::Data(d) => data += d.len(),
                BodyEvent::End { reusable } => ends.push(reusable),
                BodyEvent::Head(_) => {}
            };
            assert_eq!(r.feed(head.as_bytes(), &mut sink).unwrap(), head.len());
            let mut taken = 0usize;
            // Bytes after the body in the same feed make the connection not reusable.
            let mut overran = false;
            while !r.is_done() {
                let n = next(700);
                if next(2) == 1 {
                    let before = r.skippable();
                    r.skip(n as u64, &mut sink).unwrap();
                    taken += (before - r.skippable()) as usize;
                } else {
                    let chunk = vec![b'x'; n];
                    let used = r.feed(&chunk, &mut sink).unwrap();
                    overran = used < n;
                    taken += used;
                }
            }
            assert_eq!(r.feed(b"more", &mut sink).unwrap(), 0);
            assert_eq!(taken, BODY);
            assert!(data <= BODY);
            assert_eq!(ends, [!overran]);
        }
    }

    #[test]
    fn only_identity_length_bodies_are_skippable() {
        let mut sink = |_: BodyEvent<'_>| {};
        let mut chunked = ResponseReader::new(1 << 20, false);
        chunked
            .feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &mut sink,
            )
            .unwrap();
        assert_eq!(chunked.skippable(), 0);
        let mut gz = ResponseReader::new(1 << 20, false);
        gz.feed(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n",
            &mut sink,
        )
        .unwrap();
        assert_eq!(gz.skippable(), 0);
        let mut head = ResponseReader::new(1 << 20, false);
        assert_eq!(head.skippable(), 0);
        head.skip(5, &mut sink).unwrap();
        assert!(!head.is_done());
    }

    // ---- Content-Length ----

    #[test]
    fn content_length_keep_alive() {
        let out = ok_body(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"hello",
            true,
        );
        assert_eq!(out.head.unwrap().status, 200);
    }

    #[test]
    fn content_length_zero_and_bare_lf_head() {
        ok_body(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", b"", true);
    }

    #[test]
    fn extra_bytes_after_response_are_not_consumed_and_not_reusable() {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let mut input = first.to_vec();
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        ok_body(&input, b"hi", false);
        let mut reader = ResponseReader::new(BIG, false);
        let mut ends = Vec::new();
        let n = reader
            .feed(&input, &mut |ev| {
                if let BodyEvent::End { reusable } = ev {
                    ends.push(reusable);
                }
            })
            .unwrap();
        assert_eq!(n, first.len());
        assert_eq!(ends, [false]);
    }

    #[test]
    fn connection_close_and_http10_not_reusable() {
        ok_body(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
            b"x",
            false,
        );
        ok_body(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
            b"x",
            false,
        );
        ok_body(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
            b"x",
            true,
        );
    }

    #[test]
    fn eof_mid_body_says_how_much_arrived() {
        assert_eq!(
            protocol_err(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            "body ended after 3 of 10 bytes (connection closed)"
        );
    }

    // ---- close-delimited ----

    #[test]
    fn close_delimited_body_ends_at_eof() {
        ok_body(b"HTTP/1.1 200 OK\r\n\r\nall of it", b"all of it", false);
        ok_body(b"HTTP/1.0 200 OK\r\n\r\n", b"", false);
    }

    // ---- no body ----

    #[test]
    fn head_request_has_no_body() {
        let out = check_with(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", BIG, true);
        assert_eq!((out.body.len(), out.end, out.error), (0, Some(true), None));
        let out = check_with(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            BIG,
            true,
        );
        assert_eq!((out.body.len(), out.end, out.error), (0, Some(true), None));
    }

    #[test]
    fn no_body_for_204_and_304() {
        ok_body(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
            b"",
            true,
        );
        ok_body(b"HTTP/1.1 304 Not Modified\r\n\r\n", b"", true);
    }

    // ---- 1xx ----

    #[test]
    fn informational_heads_are_skipped() {
        let out = ok_body(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"ok",
            true,
        );
        assert_eq!(out.head.unwrap().status, 200);
    }

    #[test]
    fn switching_protocols_is_an_error() {
        assert_eq!(
            protocol_err(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"),
            "unexpected 101 Switching Protocols"
        );
    }

    #[test]
    fn endless_informational_heads_are_an_error() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INFORMATIONAL + 1);
        assert_eq!(
            protocol_err(&input),
            "more than 16 informational (1xx) responses"
        );
    }

    // ---- head errors ----

    #[test]
    fn eof_before_any_byte_and_mid_head() {
        assert_eq!(
            protocol_err(b""),
            "connection closed before any response byte"
        );
        assert_eq!(
            protocol_err(b"HTTP/1.1 200 OK\r\nCont"),
            "connection closed mid-head"
        );
        assert_eq!(
            protocol_err(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "connection closed mid-head"
        );
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        ok_body(
            b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
            b"z",
            true,
        );
    }

    #[test]
    fn garbage_fails_fast_without_a_complete_head() {
        for input in [
            &b"SSH-2.0-OpenSSH\r\n"[..],
            b"<html>",
            b"HTTP/1.1 2x0 OK\r\nstill going",
        ] {
            let mut reader = ResponseReader::new(BIG, false);
            let r = reader.feed(input, &mut |_| {});
            assert!(
                matches!(r, Err(HttpError::Protocol(ref m)) if m == "bad status line"),
                "{r:?}"
            );
        }
        assert_eq!(protocol_err(b"<html><title>x</title>"), "bad status line");
        assert_eq!(
            protocol_err(b"HTTP/2 200\r\n\r\n"),
            "bad status line: not HTTP/1.x"
        );
        assert_eq!(
            protocol_err(b"HTTP/1.1 200 OK\r\nA B: c\r\n\r\n"),
            "bad header name"
        );
    }

    #[test]
    fn oversized_head_is_too_large() {
        let mut input = b"HTTP/1.1 200 OK\r\nX-Endless: ".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(
            too_large_err(&input),
            "response head larger than 65536 bytes"
        );
        let blank = b"\r\n".repeat(MAX_HEAD_BYTES);
        assert_eq!(
            too_large_err(&blank),
            "response head larger than 65536 bytes"
        );
    }

    #[test]
    fn duplicate_length_errors_reach_the_reader() {
        assert_eq!(
            protocol_err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"),
            "conflicting Content-Length"
        );
    }

    // ---- chunked ----

    #[test]
    fn chunked_simple() {
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        );
        ok_body(&input, b"hello world", true);
    }

    #[test]
    fn chunked_extensions_whitespace_hex_case_and_bare_lf() {
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"A;name=\"v;x\"\r\n0123456789\r\n00b \t;e\r\nabcdefghijk\n1\n!\n0;last\r\n\r\n",
        );
        ok_body(&input, b"0123456789abcdefghijk!", true);
    }

    #[test]
    fn chunked_trailers_are_skipped() {
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: two\r\n\r\n",
        );
        ok_body(&input, b"abc", true);
    }

    #[test]
    fn chunked_with_content_length_is_chunked_but_not_reusable() {
        let input = with_body(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"2\r\nok\r\n0\r\n\r\n",
        );
        ok_body(&input, b"ok", false);
    }

    #[test]
    fn bad_chunk_sizes() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            &b"zz\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b" 5\r\nhello\r\n",
            b"5x\r\nhello\r\n",
            b"5 5\r\nhello\r\n",
            b"5\rhello\r\n",
            b"10000000000000000\r\n",
            b"-1\r\n",
        ] {
            assert_eq!(
                protocol_err(&with_body(head, body)),
                "bad chunk size",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn missing_crlf_after_chunk_data() {
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
        );
        assert_eq!(protocol_err(&input), "missing CRLF after chunk data");
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3\r\nabc\rX",
        );
        assert_eq!(protocol_err(&input), "missing CRLF after chunk data");
    }

    #[test]
    fn chunk_size_line_cap() {
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE));
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &body,
        );
        assert_eq!(
            too_large_err(&input),
            "chunk size line longer than 4096 bytes"
        );
    }

    #[test]
    fn trailer_cap() {
        let mut body = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILER_BYTES / 8 + 1 {
            body.extend_from_slice(b"X-T: 1\r\n");
        }
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &body,
        );
        assert_eq!(
            too_large_err(&input),
            "chunked trailers larger than 65536 bytes"
        );
    }

    #[test]
    fn bad_line_ending_after_trailers() {
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"0\r\n\rX",
        );
        assert_eq!(
            protocol_err(&input),
            "bad line ending after chunked trailers"
        );
    }

    #[test]
    fn eof_mid_chunk() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [&b""[..], b"5", b"5\r\nhel", b"5\r\nhello", b"5\r\nhello\r"] {
            assert_eq!(
                protocol_err(&with_body(head, body)),
                "connection closed mid-chunk"
            );
        }
    }

    #[test]
    fn eof_in_trailers_after_last_chunk_completes_the_body() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        ok_body(&with_body(head, b"2\r\nok\r\n0\r\n"), b"ok", false);
        ok_body(&with_body(head, b"2\r\nok\r\n0\r\nX-Half: 1"), b"ok", false);
    }

    // ---- content codings ----

    #[test]
    fn gzip_and_x_gzip() {
        let body = page(5000);
        for enc in ["gzip", "x-gzip", "GZip"] {
            let z = gzip(&body);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: {enc}\r\nContent-Length: {}\r\n\r\n",
                z.len()
            );
            ok_body(&with_body(&head, &z), &body, true);
        }
    }

    #[test]
    fn deflate_zlib_wrapped_and_raw() {
        let body = page(3000);
        for z in [zlib(&body), raw_deflate(&body)] {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: {}\r\n\r\n",
                z.len()
            );
            ok_body(&with_body(&head, &z), &body, true);
        }
    }

    #[test]
    fn gzip_over_chunked_and_close_delimited() {
        let body = page(20_000);
        let z = gzip(&body);
        let input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n",
            &chunked(&z, 777),
        );
        ok_body(&input, &body, true);
        let input = with_body(
            "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n",
            &zlib(&body),
        );
        ok_body(&input, &body, false);
    }

    /// A gzip member with every optional header field (FEXTRA, FNAME, FCOMMENT, FHCRC).
    fn gzip_all_fields(data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x1f, 0x8b, 8, 0x02 | 0x04 | 0x08 | 0x10, 0, 0, 0, 0, 0, 255];
        v.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        v.extend_from_slice(b"name.html\0");
        v.extend_from_slice(b"a comment\0");
        v.extend_from_slice(&[0xaa, 0xbb]);
        v.extend_from_slice(&raw_deflate(data));
        let mut crc = Crc::new();
        crc.update(data);
        v.extend_from_slice(&crc.sum().to_le_bytes());
        v.extend_from_slice(&crc.amount().to_le_bytes());
        v
    }

    #[test]
    fn gzip_optional_header_fields() {
        let body = page(1000);
        let z = gzip_all_fields(&body);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            z.len()
        );
        ok_body(&with_body(&head, &z), &body, true);
    }

    #[test]
    fn gzip_multi_member_and_trailing_garbage() {
        let mut z = gzip(b"first ");
        z.extend_from_slice(&gzip(b"second"));
        z.extend_from_slice(b"\0\0junk after the members");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            z.len()
        );
        ok_body(&with_body(&head, &z), b"first second", true);
    }

    #[test]
    fn gzip_errors() {
        let gz_head = |len: usize| {
            format!("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len}\r\n\r\n")
        };
        let mut z = gzip(b"checksummed");
        let n = z.len();
        z[n - 8] ^= 0xff;
        assert_eq!(
            protocol_err(&with_body(&gz_head(n), &z)),
            "gzip checksum mismatch"
        );

        let not_gzip = b"plain text, not gzip";
        assert_eq!(
            protocol_err(&with_body(&gz_head(not_gzip.len()), not_gzip)),
            "bad gzip header"
        );
        let mut reserved = gzip(b"x");
        reserved[3] = 0x20;
        assert_eq!(
            protocol_err(&with_body(&gz_head(reserved.len()), &reserved)),
            "bad gzip header"
        );

        // A deflate block of reserved type 3 is corrupt data.
        let mut corrupt = gzip(b"x");
        corrupt[10] = 0xff;
        let msg = protocol_err(&with_body(&gz_head(corrupt.len()), &corrupt));
        assert!(msg.starts_with("bad gzip data: "), "{msg}");
    }

    #[test]
    fn truncated_compressed_body_is_accepted() {
        let body = page(50_000);
        let z = gzip(&body);
        let cut = &z[..z.len() / 2];
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            cut.len()
        );
        let out = check(&with_body(&head, cut));
        assert_eq!(out.error, None);
        assert_eq!(out.end, Some(true));
        assert!(!out.body.is_empty() && body.starts_with(&out.body));
    }

    #[test]
    fn one_byte_deflate_body() {
        let out =
            check(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: 1\r\n\r\n\x03");
        assert_eq!((out.error, out.body.len(), out.end), (None, 0, Some(true)));
    }

    #[test]
    fn unknown_coding_passes_through_unsupported_coding_fails() {
        ok_body(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: utf-8\r\nContent-Length: 2\r\n\r\nhi",
            b"hi",
            true,
        );
        ok_body(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 2\r\n\r\nhi",
            b"hi",
            true,
        );
        assert_eq!(
            protocol_err(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nhi"),
            "unsupported Content-Encoding: br"
        );
        assert_eq!(
            protocol_err(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n\r\nhi"
            ),
            "unsupported Content-Encoding: gzip, gzip"
        );
        // No body byte, no error: a redirect with an odd coding still works.
        ok_body(
            b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Encoding: br\r\nContent-Length: 0\r\n\r\n",
            b"",
            true,
        );
    }

    // ---- body limit ----

    #[test]
    fn max_body_cuts_identity_bodies() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
        let out = check_with(input, 4, false);
        assert_eq!(
            (out.body.as_slice(), out.end, out.error),
            (&b"0123"[..], Some(false), None)
        );
        let out = check_with(input, 10, false);
        assert_eq!((out.body.len(), out.end), (10, Some(true)));
        let out = check_with(input, 0, false);
        assert_eq!((out.body.len(), out.end), (0, Some(false)));
        let out = check_with(b"HTTP/1.1 200 OK\r\n\r\nendless stream", 7, false);
        assert_eq!(
            (out.body.as_slice(), out.end),
            (&b"endless"[..], Some(false))
        );
        let chunked_input = with_body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &chunked(b"abcdefghij", 3),
        );
        let out = check_with(&chunked_input, 5, false);
        assert_eq!((out.body.as_slice(), out.end), (&b"abcde"[..], Some(false)));
    }

    #[test]
    fn decompression_bomb_is_cut_at_max_body() {
        let zeros = vec![0u8; 8 << 20];
        let z = gzip(&zeros);
        assert!(z.len() < 64 * 1024);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            z.len()
        );
        let input = with_body(&head, &z);
        let max = 100_000;
        let whole = run_pieces(&input, &[], max, false);
        assert_eq!(whole.error, None);
        assert_eq!(whole.body.len(), max as usize);
        assert_eq!(whole.end, Some(false));
        assert!(
            whole.max_event <= OUT_CHUNK,
            "one step inflated {} bytes",
            whole.max_event
        );
        let cuts: Vec<usize> = (1..input.len()).step_by(97).collect();
        assert_eq!(
            run_pieces(&input, &cuts, max, false).body.len(),
            max as usize
        );
    }

    #[test]
    fn compressed_input_is_bounded_too() {
        // Empty stored deflate blocks decode to nothing; the encoded bytes still count.
        let empty_block = [0u8, 0, 0, 0xff, 0xff];
        let body = empty_block.repeat(100);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let out = check_with(&with_body(&head, &body), 50, false);
        assert_eq!((out.body.len(), out.end, out.error), (0, Some(false), None));
    }

    // ---- splitting ----

    /// xorshift64*: deterministic pseudo-random numbers for the split test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_split_points_give_identical_output() {
        let body = page(30_000);
        let z = gzip(&body);
        let fixtures: Vec<Vec<u8>> =
            vec![
            with_body(
                &format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()),
                &body,
            ),
            with_body(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                 Content-Encoding: gzip\r\n\r\n",
                &chunked(&z, 1000),
            ),
            with_body("HTTP/1.0 200 OK\r\nContent-Encoding: deflate\r\n\r\n", &raw_deflate(&body)),
            with_body(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"4;a=b\r\nwiki\r\n0\r\nT: 1\r\n\r\nHTTP/1.1",
            ),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab".to_vec(),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for input in &fixtures {
            for max_body in [BIG, 12_345] {
                let expected = run_pieces(input, &[], max_body, false);
                for _ in 0..40 {
                    let mut cuts: Vec<usize> =
                        (0..rng.below(12)).map(|_| rng.below(input.len())).collect();
                    cuts.sort_unstable();
                    let got = run_pieces(input, &cuts, max_body, false);
                    assert_eq!(
                        Outcome {
                            max_event: 0,
                            ..got
                        },
                        Outcome {
                            max_event: 0,
                            ..expected.clone()
                        },
                        "cuts {cuts:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn fuzz_seed_corpus_agrees_across_splits() {
        // Same input layout as fuzz/fuzz_targets/http_response.rs: split byte, options, data.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/http_response");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let [_, options, input @ ..] = data.as_slice() else {
                continue;
            };
            let max_body = if options & 2 != 0 { 1000 } else { 1 << 20 };
            let whole = check_with(input, max_body, options & 1 != 0);
            // Every single split point, as the fuzz target does.
            for split in 1..input.len() {
                let got = run_pieces(input, &[split], max_body, options & 1 != 0);
                assert_eq!(
                    Outcome {
                        max_event: 0,
                        ..got
                    },
                    Outcome {
                        max_event: 0,
                        ..whole.clone()
                    },
                    "split at {split}"
                );
            }
            seen += 1;
        }
        assert!(seen >= 5, "seed corpus missing");
    }

    #[test]
    fn random_corrupt_gzip_agrees_across_splits() {
        let body = page(4000);
        let mut rng = Rng(42);
        for _ in 0..200 {
            let mut z = gzip(&body);
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(z.len());
                z[i] ^= 1 << rng.below(8);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                z.len()
            );
            let input = with_body(&head, &z);
            let max_body = [BIG, 1000][rng.below(2)];
            let expected = run_pieces(&input, &[], max_body, false);
            let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(input.len())).collect();
            cuts.sort_unstable();
            let got = run_pieces(&input, &cuts, max_body, false);
            assert_eq!(
                Outcome {
                    max_event: 0,
                    ..got
                },
                Outcome {
                    max_event: 0,
                    ..expected
                },
                "cuts {cuts:?}"
            );
        }
    }
}
