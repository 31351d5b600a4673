//! Streaming content decoding (`Content-Encoding: gzip`, `x-gzip`, `deflate`) for response
//! bodies, sans-IO: compressed bytes in, bounded slices of decoded bytes out.
//!
//! Output is produced through a fixed [`OUT_CHUNK`] buffer and handed to a callback that
//! may say "stop" (the body limit was reached), so a decompression bomb never inflates more
//! than one buffer beyond the limit. The gzip member framing (RFC 1952 header and trailer)
//! is parsed here byte by byte; the deflate data itself is inflated by `flate2::Decompress`.
//! `deflate` bodies are zlib-wrapped per RFC 9110 but many servers send raw deflate: the
//! first two bytes decide. A stream cut short by the end of the body is accepted as is (the
//! bytes decoded so far were delivered); corrupt data is a protocol error.

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::HttpError;

/// Size of the decoded-output buffer: the most decoded bytes produced per step. Equal to
/// the inflater's 32 KiB window (see `inflate` for why).
pub const OUT_CHUNK: usize = 32 * 1024;

/// Content codings we know but cannot decode (we never advertise them).
const UNSUPPORTED_CODINGS: [&str; 4] = ["br", "zstd", "compress", "x-compress"];

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const GZIP_CM_DEFLATE: u8 = 8;
const GZIP_HEADER_LEN: usize = 10;
const GZIP_TRAILER_LEN: usize = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// Callback receiving decoded bytes; returns `false` to stop decoding.
pub type Emit<'a> = dyn FnMut(&[u8]) -> bool + 'a;

/// The decoder for one response body, chosen from its `Content-Encoding`.
pub struct Decoder {
    kind: Kind,
    out: Vec<u8>,
}

enum Kind {
    Identity,
    /// A coding we cannot decode; an error once a body byte arrives.
    Unsupported(String),
    Gzip(Box<Gzip>),
    Deflate(Box<Deflate>),
}

impl Decoder {
    /// Bytes pass through unchanged (no content coding to undo).
    pub fn is_identity(&self) -> bool {
        matches!(self.kind, Kind::Identity)
    }

    /// Pick the decoder for a `Content-Encoding` value (lower-cased list, as in
    /// `ResponseHead::content_encoding`). `identity` entries are ignored; a single `gzip`,
    /// `x-gzip` or `deflate` is decoded; a coding we know but cannot decode, or a chain of
    /// several, fails on the first body byte; an unknown token is passed through unchanged
    /// (as browsers do with misconfigured servers that send e.g. a charset there).
    pub fn new(content_encoding: Option<&str>) -> Decoder {
        let codings: Vec<&str> = content_encoding
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
            .collect();
        let kind = match codings.as_slice() {
            [] => Kind::Identity,
            [one] if one.eq_ignore_ascii_case("gzip") || one.eq_ignore_ascii_case("x-gzip") => {
                Kind::Gzip(Box::new(Gzip::new()))
            }
            [one] if one.eq_ignore_ascii_case("deflate") => {
                Kind::Deflate(Box::new(Deflate::Detect(None)))
            }
            [one]
                if !UNSUPPORTED_CODINGS
                    .iter()
                    .any(|u| one.eq_ignore_ascii_case(u)) =>
            {
                Kind::Identity
            }
            _ => Kind::Unsupported(format!(
                "unsupported Content-Encoding: {}",
                codings.join(", ")
            )),
        };
        let out = match kind {
            Kind::Gzip(_) | Kind::Deflate(_) => vec![0; OUT_CHUNK],
            Kind::Identity | Kind::Unsupported(_) => Vec::new(),
        };
        Decoder { kind, out }
    }

    /// Decode `input` (all of it, unless `emit` stops). `Ok(false)`: `emit` said stop.
    pub fn decode(&mut self, input: &[u8], emit: &mut Emit<'_>) -> Result<bool, HttpError> {
        if input.is_empty() {
            return Ok(true);
        }
        match &mut self.kind {
            Kind::Identity => Ok(emit(input)),
            Kind::Unsupported(msg) => Err(HttpError::Protocol(msg.clone())),
            Kind::Gzip(gz) => gz.decode(input, &mut self.out, emit),
            Kind::Deflate(d) => d.decode(input, &mut self.out, emit),
        }
    }

    /// The body ended: decode anything held back. `Ok(false)`: `emit` said stop.
    pub fn finish(&mut self, emit: &mut Emit<'_>) -> Result<bool, HttpError> {
        match &mut self.kind {
            Kind::Deflate(d) => match **d {
                // A one-byte body: too short to be zlib, inflate it raw (it will fail or
                // produce nothing; either way the caller learns).
                Deflate::Detect(Some(first)) => {
                    **d = Deflate::Inflating(Decompress::new(false));
                    d.decode(&[first], &mut self.out, emit)
                }
                _ => Ok(true),
            },
            Kind::Identity | Kind::Unsupported(_) | Kind::Gzip(_) => Ok(true),
        }
    }
}

/// What one inflate run ended with.
enum Inflated {
    /// All input consumed, the stream continues.
    NeedMore,
    /// The deflate stream ended after this many input bytes.
    StreamEnd(usize),
    /// `emit` said stop.
    Stopped,
}

/// Inflate `input` through `out`, emitting each filled piece. `on_out` also sees the bytes
/// first (gzip CRC).
///
/// The inflater decodes into its 32 KiB window ring and copies out from there; when it hits
/// corrupt data it reports the error and drops whatever of its last step did not fit the
/// output slice. Offering exactly the space up to the ring's end (`total_out` modulo the
/// window) means every step fits, so the bytes delivered before an error do not depend on
/// how the input was split (fuzzing found the difference with a plain 16 KiB slice).
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    out: &mut [u8],
    what: &str,
    on_out: &mut dyn FnMut(&[u8]),
    emit: &mut Emit<'_>,
) -> Result<Inflated, HttpError> {
    let mut used_total = 0;
    loop {
        let (in0, out0) = (d.total_in(), d.total_out());
        // Less than OUT_CHUNK, so the cast cannot truncate.
        let space = OUT_CHUNK - (out0 % OUT_CHUNK as u64) as usize;
        let out = &mut out[..space];
        let result = d.decompress(&input[used_total..], out, FlushDecompress::None);
        // Both deltas are bounded by the slice lengths passed in.
        let used = (d.total_in() - in0) as usize;
        let produced = (d.total_out() - out0) as usize;
        used_total += used;
        // Bytes decoded before a corruption are delivered first, so where the body limit
        // falls relative to the error does not depend on how the input was split.
        if produced > 0 {
            on_out(&out[..produced]);
            if !emit(&out[..produced]) {
                return Ok(Inflated::Stopped);
            }
        }
        let status = result.map_err(|e| HttpError::Protocol(format!("bad {what} data: {e}")))?;
        if status == Status::StreamEnd {
            return Ok(Inflated::StreamEnd(used_total));
        }
        if (used == 0 && produced == 0) || (used_total == input.len() && produced < out.len()) {
            return Ok(Inflated::NeedMore);
        }
    }
}

/// `deflate` content: zlib or raw, decided on the first two bytes.
enum Deflate {
    Detect(Option<u8>),
    Inflating(Decompress),
    /// The stream ended; anything after it is ignored.
    Ended,
}

/// RFC 1950: CM = 8, window ≤ 32 KiB, header checksum, no preset dictionary.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8
        && cmf >> 4 <= 7
        && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
        && flg & 0x20 == 0
}

impl Deflate {
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        emit: &mut Emit<'_>,
    ) -> Result<bool, HttpError> {
        let mut held = None;
        if let Deflate::Detect(first) = *self {
            match (first, input) {
                (None, [only]) => {
                    *self = Deflate::Detect(Some(*only));
                    return Ok(true);
                }
                (None, [a, b, ..]) => {
                    *self = Deflate::Inflating(Decompress::new(is_zlib_header(*a, *b)))
                }
                (Some(a), [b, ..]) => {
                    *self = Deflate::Inflating(Decompress::new(is_zlib_header(a, *b)));
                    held = Some(a);
                }
                (_, []) => return Ok(true),
            }
        }
        let Deflate::Inflating(d) = self else {
            return Ok(true);
        };
        if let Some(a) = held {
            match inflate(d, &[a], out, "deflate", &mut |_| {}, emit)? {
                Inflated::NeedMore => {}
                Inflated::Stopped => return Ok(false),
                Inflated::StreamEnd(_) => {
                    *self = Deflate::Ended;
                    return Ok(true);
                }
            }
        }
        match inflate(d, input, out, "deflate", &mut |_| {}, emit)? {
            Inflated::NeedMore => Ok(true),
            Inflated::Stopped => Ok(false),
            Inflated::StreamEnd(_) => {
                *self = Deflate::Ended;
                Ok(true)
            }
        }
    }
}

/// Where a gzip member parse stands.
#[derive(Clone, Copy)]
enum GzState {
    /// The fixed 10-byte header, `got` bytes so far.
    Header {
        got: usize,
    },
    /// FEXTRA length (2 bytes little-endian), `got` bytes so far.
    ExtraLen {
        got: usize,
    },
    Extra {
        remaining: usize,
    },
    /// Zero-terminated FNAME.
    Name,
    /// Zero-terminated FCOMMENT.
    Comment,
    HeaderCrc {
        remaining: usize,
    },
    Body,
    Trailer {
        got: usize,
    },
    /// After a member: bytes that are not another member are ignored.
    Ignore,
}

struct Gzip {
    state: GzState,
    header: [u8; GZIP_HEADER_LEN],
    extra_len: [u8; 2],
    trailer: [u8; GZIP_TRAILER_LEN],
    inflate: Decompress,
    crc: Crc,
    /// Members completed so far; a following member must start with the magic, else the
    /// rest is ignored.
    members: u32,
}

impl Gzip {
    fn new() -> Gzip {
        Gzip {
            state: GzState::Header { got: 0 },
            header: [0; GZIP_HEADER_LEN],
            extra_len: [0; 2],
            trailer: [0; GZIP_TRAILER_LEN],
            inflate: Decompress::new(false),
            crc: Crc::new(),
            members: 0,
        }
    }

    fn flags(&self) -> u8 {
        self.header[3]
    }

    /// The header part that follows `after` given the flags.
    fn next_header_state(&self, after: GzState) -> GzState {
        let flags = self.flags();
        let order = [
            (FEXTRA, GzState::ExtraLen { got: 0 }),
            (FNAME, GzState::Name),
            (FCOMMENT, GzState::Comment),
            (FHCRC, GzState::HeaderCrc { remaining: 2 }),
        ];
        let start = match after {
            GzState::Header { .. } => 0,
            GzState::ExtraLen { .. } | GzState::Extra { .. } => 1,
            GzState::Name => 2,
            GzState::Comment => 3,
            _ => 4,
        };
        order[start..]
            .iter()
            .find(|(flag, _)| flags & flag != 0)
            .map_or(GzState::Body, |&(_, state)| state)
    }

    fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        emit: &mut Emit<'_>,
    ) -> Result<bool, HttpError> {
        let bad_header = || HttpError::Protocol("bad gzip header".into());
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                GzState::Header { got } => {
                    let is_magic = got >= GZIP_MAGIC.len() || b == GZIP_MAGIC[got];
                    if !is_magic && self.members > 0 {
                        self.state = GzState::Ignore;
                        continue;
                    }
                    if !is_magic
                        || (got == 2 && b != GZIP_CM_DEFLATE)
                        || (got == 3 && b & FRESERVED != 0)
                    {
                        return Err(bad_header());
                    }
                    self.header[got] = b;
                    i += 1;
                    self.state = if got + 1 == GZIP_HEADER_LEN {
                        self.next_header_state(GzState::Header { got })
                    } else {
                        GzState::Header { got: got + 1 }
                    };
                }
                GzState::ExtraLen { got } => {
                    self.extra_len[got] = b;
                    i += 1;
                    self.state = if got == 0 {
                        GzState::ExtraLen { got: 1 }
                    } else {
                        match usize::from(u16::from_le_bytes(self.extra_len)) {
                            0 => self.next_header_state(GzState::Extra { remaining: 0 }),
                            n => GzState::Extra { remaining: n },
                        }
                    };
                }
                GzState::Extra { remaining } => {
                    let take = remaining.min(input.len() - i);
                    i += take;
                    self.state = if take == remaining {
                        self.next_header_state(GzState::Extra { remaining: 0 })
                    } else {
                        GzState::Extra {
                            remaining: remaining - take,
                        }
                    };
                }
                GzState::Name | GzState::Comment => {
                    i += 1;
                    if b == 0 {
                        self.state = self.next_header_state(self.state);
                    }
                }
                GzState::HeaderCrc { remaining } => {
                    i += 1;
                    self.state = if remaining == 1 {
                        GzState::Body
                    } else {
                        GzState::HeaderCrc {
                            remaining: remaining - 1,
                        }
                    };
                }
                GzState::Body => {
                    let crc = &mut self.crc;
                    match inflate(
                        &mut self.inflate,
                        &input[i..],
                        out,
                        "gzip",
                        &mut |o| crc.update(o),
                        emit,
                    )? {
                        Inflated::NeedMore => return Ok(true),
                        Inflated::Stopped => return Ok(false),
                        Inflated::StreamEnd(used) => {
                            i += used;
                            self.state = GzState::Trailer { got: 0 };
                        }
                    }
                }
                GzState::Trailer { got } => {
                    self.trailer[got] = b;
                    i += 1;
                    if got + 1 < GZIP_TRAILER_LEN {
                        self.state = GzState::Trailer { got: got + 1 };
                        continue;
                    }
                    let [c0, c1, c2, c3, s0, s1, s2, s3] = self.trailer;
                    if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.sum()
                        || u32::from_le_bytes([s0, s1, s2, s3]) != self.crc.amount()
                    {
                        return Err(HttpError::Protocol("gzip checksum mismatch".into()));
                    }
                    self.members += 1;
                    self.crc.reset();
                    self.inflate.reset(false);
                    self.state = GzState::Header { got: 0 };
                }
                GzState::Ignore => return Ok(true),
            }
        }
        Ok(true)
    }
}
