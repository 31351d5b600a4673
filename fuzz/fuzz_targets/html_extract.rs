//! Fuzz target for `html::Extractor`: no panic, bounded valid-UTF-8 output, the same result
//! whether the body arrives whole or cut into arbitrary pieces, with and without a
//! `--follow` selector; and the fast path gives exactly what the full parser gives
//! (`Extractor::new` against `Extractor::without_fast_path`), `feed`'s answers included.
//!
//! Input layout: byte 0 picks the Content-Type (bits 0-1, and bit 3 for the second four)
//! and whether to follow links (bit 2); byte 1 seeds the piece sizes; the rest is the body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringcrawl::html::{Extracted, Extractor, FollowSelector, MAX_TITLE_BYTES};

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("text/html; charset=utf-8"),
    Some("text/html; charset=shift_jis"),
    Some("text/html; charset=utf-16le"),
    Some("text/html; charset=iso-8859-1"),
    Some("text/html; charset=x-user-defined"),
    Some("text/html; charset=gb18030"),
    Some("text/html; charset=iso-2022-jp"),
];
/// Largest piece the splitter cuts.
const MAX_PIECE: u32 = 97;

fn follow_selector() -> &'static FollowSelector {
    static SELECTOR: OnceLock<FollowSelector> = OnceLock::new();
    SELECTOR.get_or_init(|| FollowSelector::parse("h3 a, .post > a[href]").expect("valid"))
}

/// Feeds `body` to `ex` in pieces whose sizes come from `seed` (`None`: whole) and
/// finishes; also reports whether `feed` said enough.
fn extract(mut ex: Extractor, body: &[u8], seed: Option<u8>) -> (Extracted, bool) {
    let mut rest = body;
    let mut state = u32::from(seed.unwrap_or(0)) | 0x100;
    while !rest.is_empty() {
        let size = match seed {
            None => rest.len(),
            Some(_) => {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (1 + state % MAX_PIECE) as usize
            }
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        if ex.feed(piece) {
            return (ex.finish(), true);
        }
    }
    (ex.finish(), false)
}

fn check_text(s: &Option<String>) {
    if let Some(s) = s {
        assert!(std::str::from_utf8(s.as_bytes()).is_ok());
    }
}

fuzz_target!(|data: &[u8]| {
    let [control, seed, body @ ..] = data else {
        return;
    };
    let ct = CONTENT_TYPES[usize::from(control & 3) | usize::from((control >> 1) & 4)];
    let follow = (control & 4 != 0).then(follow_selector);

    let mut results = Vec::new();
    for pieces in [None, Some(*seed)] {
        let fast = extract(Extractor::new(ct, follow), body, pieces);
        let full = extract(Extractor::without_fast_path(ct, follow), body, pieces);
        assert_eq!(
            fast, full,
            "fast path and full parser disagree ({pieces:?})"
        );
        results.push(fast.0);
    }
    let whole = &results[0];
    assert_eq!(whole, &results[1], "whole and split bodies disagree");

    check_text(&whole.title);
    check_text(&whole.link);
    check_text(&whole.base_href);
    if let Some(title) = &whole.title {
        assert!(title.len() <= MAX_TITLE_BYTES);
        assert_eq!(title.trim_matches(|c: char| c.is_ascii_whitespace()), title);
        assert!(!title.contains("  "));
    }
    if follow.is_none() {
        assert_eq!(whole.link, None);
    }
});
