//! Fuzz target for the sans-IO response reader (head parsing, framing, decoding).
//!
//! Input layout: byte 0 picks a split point, byte 1 picks options (bit 0: HEAD request,
//! bit 1: a small body limit), the rest is the raw response. The reader must never panic,
//! and feeding the response whole or split in two must give the same head, body, end and
//! error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcrawl::http::{BodyEvent, HttpError, ResponseHead, ResponseReader};

/// Body limit used when option bit 1 is set: small enough to hit often.
const SMALL_MAX_BODY: u64 = 1000;
/// Body limit otherwise.
const LARGE_MAX_BODY: u64 = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    head: Option<ResponseHead>,
    body: Vec<u8>,
    end: Option<bool>,
    error: Option<HttpError>,
}

fn run(input: &[u8], split: usize, max_body: u64, head_request: bool) -> Outcome {
    let mut reader = ResponseReader::new(max_body, head_request);
    let mut out = Outcome {
        head: None,
        body: Vec::new(),
        end: None,
        error: None,
    };
    let mut consumed = 0;
    {
        let mut sink = |ev: BodyEvent<'_>| {
            assert!(out.end.is_none(), "event after End");
            match ev {
                BodyEvent::Head(h) => {
                    assert!(out.head.is_none(), "second Head");
                    out.head = Some(h.clone());
                }
                BodyEvent::Data(d) => {
                    assert!(out.head.is_some(), "Data before Head");
                    out.body.extend_from_slice(d);
                }
                BodyEvent::End { reusable } => out.end = Some(reusable),
            }
        };
        for piece in [&input[..split], &input[split..]] {
            match reader.feed(piece, &mut sink) {
                Ok(n) => {
                    assert!(n == piece.len() || reader.is_done());
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
    assert!(out.body.len() as u64 <= max_body, "body limit exceeded");
    if out.error.is_none() {
        // Unconsumed bytes after `End` make the connection non-reusable.
        out.end = out.end.map(|r| r && consumed == input.len());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [split_byte, options, input @ ..] = data else {
        return;
    };
    let split = usize::from(*split_byte) % (input.len() + 1);
    let head_request = options & 1 != 0;
    let max_body = if options & 2 != 0 {
        SMALL_MAX_BODY
    } else {
        LARGE_MAX_BODY
    };
    let whole = run(input, input.len(), max_body, head_request);
    let split = run(input, split, max_body, head_request);
    assert_eq!(whole, split);
});
