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
        let buf = &self.head_buf;
        for j in self.head_scan.max(1)..buf.len() {
            if buf[j] == b'\n'
                && (buf[j - 1] == b'\n' || (buf[j - 1] == b'\r' && j >= 2 && buf[j - 2] == b'\n'))
            {
                return Some(j + 1);
            }
        }
        self.head_scan = buf.len();
        None
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
            State::Head if !self.any_byte => {
                Err(protocol("connection closed before any response byte"))
            }
            State::Head => Err(protocol("connection closed mid-head")),
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

    /// `End` has been emitted.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
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
