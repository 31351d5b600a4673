//! Fuzz target for `html::Extractor`: no panic, bounded valid-UTF-8 output, and the same
//! result whether the body arrives whole or cut into arbitrary pieces, with and without a
//! `--follow` selector.
//!
//! Input layout: byte 0 picks the Content-Type (bits 0-1) and whether to follow links
//! (bit 2); byte 1 seeds the piece sizes; the rest is the body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringcrawl::html::{Extracted, Extractor, FollowSelector, MAX_TITLE_BYTES};

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("text/html; charset=utf-8"),
    Some("text/html; charset=shift_jis"),
    Some("text/html; charset=utf-16le"),
];
/// Largest piece the splitter cuts.
const MAX_PIECE: u32 = 97;

fn follow_selector() -> &'static FollowSelector {
    static SELECTOR: OnceLock<FollowSelector> = OnceLock::new();
    SELECTOR.get_or_init(|| FollowSelector::parse("h3 a, .post > a[href]").expect("valid"))
}

/// Feeds `body` in pieces whose sizes come from `seed` (`None`: whole) and finishes.
fn extract(
    body: &[u8],
    ct: Option<&str>,
    follow: Option<&FollowSelector>,
    seed: Option<u8>,
) -> Extracted {
    let mut ex = Extractor::new(ct, follow);
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
            break;
        }
    }
    ex.finish()
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
    let ct = CONTENT_TYPES[usize::from(control & 3)];
    let follow = (control & 4 != 0).then(follow_selector);

    let whole = extract(body, ct, follow, None);
    let split = extract(body, ct, follow, Some(*seed));
    assert_eq!(whole, split, "whole and split bodies disagree");

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
