//! Differential tests: the fast path against the full parser ([`Extractor::new`] against
//! [`Extractor::without_fast_path`]) on every page shape of `tests/support/pages.rs` under
//! every charset case, and on generated documents in and around the fast path's subset,
//! each fed whole, a byte at a time and in uneven pieces. Results and `feed`'s answers must
//! be identical; the tests also check that the fast path really reads most simple documents.

use encoding_rs::Encoding;

use super::fast::{self, Scan, Scanner};
use super::{detect_encoding, Extracted, Extractor, FollowSelector, PRESCAN_BYTES};

#[allow(
    dead_code,
    reason = "shared with the integration tests, which use all of it"
)]
#[path = "../../tests/support/pages.rs"]
mod pages;

/// Content-Type values covering every charset case: none, the default, UTF-8, single-byte,
/// multi-byte ASCII-compatible, not ASCII-compatible, an unknown label.
const CONTENT_TYPES: [Option<&str>; 11] = [
    None,
    Some("text/html"),
    Some("text/html; charset=utf-8"),
    Some("text/html; charset=iso-8859-1"),
    Some("text/html; charset=koi8-r"),
    Some("text/html; charset=x-user-defined"),
    Some("text/html; charset=shift_jis"),
    Some("text/html; charset=gb18030"),
    Some("text/html; charset=utf-16le"),
    Some("text/html; charset=iso-2022-jp"),
    Some("text/html; charset=bogus"),
];
/// Largest piece of the uneven splits.
const MAX_PIECE: u64 = 97;
/// Documents longer than this are not fed a byte at a time (the full parser is slow at it in
/// debug builds); they still get the uneven pieces.
const MAX_BYTEWISE_LEN: usize = 8 * 1024;
/// Generated documents.
const GENERATED: usize = 2500;

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Feeds `body` to `ex` in pieces (`None`: whole; `Some(0)`: uneven pieces from `seed`;
/// `Some(n)`: `n` bytes each) until it says enough.
fn run(mut ex: Extractor, body: &[u8], pieces: Option<usize>, seed: u64) -> (Extracted, bool) {
    let mut rng = Rng(seed | 1);
    let mut rest = body;
    while !rest.is_empty() {
        let size = match pieces {
            None => rest.len(),
            Some(0) => 1 + (rng.next() % MAX_PIECE) as usize,
            Some(n) => n,
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        if ex.feed(piece) {
            return (ex.finish(), true);
        }
    }
    (ex.finish(), false)
}

/// Both paths on `body`, whole and split; panics on any difference. Returns the result.
fn compare(body: &[u8], ct: Option<&str>, follow: Option<&FollowSelector>, seed: u64) -> Extracted {
    let mut splits = vec![None, Some(0), Some(7)];
    if body.len() <= MAX_BYTEWISE_LEN {
        splits.push(Some(1));
    }
    let mut whole = None;
    for pieces in splits {
        let fast = run(Extractor::new(ct, follow), body, pieces, seed);
        let full = run(Extractor::without_fast_path(ct, follow), body, pieces, seed);
        assert_eq!(
            fast,
            full,
            "fast path and full parser differ ({pieces:?} pieces, {ct:?}) on {:?}",
            String::from_utf8_lossy(body)
        );
        whole.get_or_insert(fast.0);
    }
    whole.expect("at least one run")
}

/// Whether the fast path reads the title of `body` itself (the document given whole).
fn fast_path_reads(body: &[u8], ct: Option<&str>) -> bool {
    let header = ct.and_then(super::charset_from_content_type);
    let (encoding, bom_len) = detect_encoding(&body[..body.len().min(PRESCAN_BYTES)], header);
    fast::applies_to(encoding)
        && matches!(Scanner::default().scan(&body[bom_len..]), Scan::Title(_))
}

#[test]
fn every_page_shape_under_every_charset() {
    use pages::{render, PageKind};
    for kind in PageKind::ALL {
        for label in ["h0001 p0001", "h0042 p0007"] {
            let page = render(kind, label);
            let declared = Some(page.content_type.header_value());
            let found = compare(&page.body, declared, None, 7);
            if kind != PageKind::NotHtml {
                assert_eq!(found.title, page.title, "{}", kind.name());
                assert_eq!(found.title_truncated, page.truncated, "{}", kind.name());
            }
            for ct in CONTENT_TYPES {
                compare(&page.body, ct, None, 11);
            }
        }
    }
}

#[test]
fn the_fast_path_reads_the_simple_page_shapes() {
    use pages::{render, PageKind};
    let fast = [
        PageKind::Utf8Header,
        PageKind::MetaWindows1252,
        PageKind::MetaLatin1,
        PageKind::Utf8Bom,
        PageKind::HttpEquiv,
        PageKind::NoDeclaration,
        PageKind::HeaderBeatsMeta,
        PageKind::CommentTrap,
        PageKind::UpperCase,
        PageKind::Entities,
        PageKind::Whitespace,
        PageKind::Empty,
        PageKind::Blank,
        PageKind::Attributes,
        PageKind::MarkupInside,
        PageKind::LateTitle,
        PageKind::Long,
    ];
    for kind in PageKind::ALL {
        let page = render(kind, "h0001 p0001");
        let reads = fast_path_reads(&page.body, Some(page.content_type.header_value()));
        assert_eq!(reads, fast.contains(&kind), "{}", kind.name());
    }
}

#[test]
fn pages_without_title_need_no_parser() {
    let page = pages::render(pages::PageKind::Missing, "h0001 p0001");
    assert!(!fast::may_have_title(&page.body));
    assert_eq!(compare(&page.body, Some("text/html"), None, 3).title, None);
    let script = b"<script>document.title = 'x'</script><p>no title element</p>";
    assert!(!fast::may_have_title(script));
    assert!(fast::may_have_title(b"<p>a</p><TiTlE>"));
}

#[test]
fn follow_never_takes_the_fast_path() {
    let follow = FollowSelector::parse("a").expect("valid");
    let body = b"<html><head><title>T</title></head><body><a href=/x>x</a>";
    let found = compare(body, Some("text/html; charset=utf-8"), Some(&follow), 5);
    assert_eq!(found.link.as_deref(), Some("/x"));
    assert_eq!(found.title.as_deref(), Some("T"));
}

/// Pieces of markup before the title in the fast path's subset, edges included.
const SUBSET: [&[u8]; 49] = [
    b" ",
    b"\n",
    b"\r\n",
    b"\t\x0c",
    b"text",
    b"a < b",
    b"<3",
    b"< title>",
    b"&amp;&lt;title&gt;",
    b"caf\xe9 \xc3\xa9 \xc3",
    b"\0",
    b"<!DOCTYPE html>",
    b"<!doctype html PUBLIC \"-//W3C//DTD x>y\" \"z\">",
    b"<!-- c -->",
    b"<!---->",
    b"<!-->",
    b"<!--->",
    b"<!-- a --!>",
    b"<!-- a -- b --->",
    b"<!-- <title>in comment</title> -->",
    b"<!--[if IE]><title>ie</title><![endif]-->",
    b"<!-- x --!x <!-- -->",
    b"<?xml version=\"1.0\"?>",
    b"<!x>",
    b"</ x>",
    b"</>",
    b"<![CDATA[<title>c</title>]]>",
    b"<html lang=en>",
    b"<HEAD>",
    b"<body class='a>b'>",
    b"<meta charset=utf-8>",
    b"<meta charset=\"windows-1251\">",
    b"<meta http-equiv=content-type content='text/html; charset=koi8-r'>",
    b"<meta charset=shift_jis>",
    b"<meta charset=utf-16>",
    b"<meta name=\"x\" content=\"<title>attr</title>\"/>",
    b"<link rel=stylesheet href=/a.css />",
    b"<div data-a=\"x\"data-b='y' c = d e=>",
    b"<p title=\"<title>\"><a href=x/>",
    b"<img src=x alt='>' / >",
    b"<input value=\"\">",
    b"</head>",
    b"</title>",
    b"</div attr='>'>",
    b"</svg></math></template>",
    b"<titles>",
    b"<title-x>",
    b"<tit>",
    b"<ti tle>",
];
/// Pieces of markup outside the subset (or not finished), before the title.
const OUTSIDE: [&[u8]; 13] = [
    b"<!-- unterminated <title>u</title>",
    b"<a b=\"c",
    b"<script>var t = '<title>s</title>';</script>",
    b"<style>/*<title>st</title>*/</style>",
    b"<textarea><title>ta</title></textarea>",
    b"<svg><title>svg</title></svg>",
    b"<math><mi><title>m</title></mi></math>",
    b"<template><title>tpl</title></template>",
    b"<noscript><title>ns</title></noscript>",
    b"<xmp><title>x</title></xmp>",
    b"<iframe><title>i</title></iframe>",
    b"<noembed></noembed><noframes></noframes>",
    b"<plaintext>",
];
const TITLE_START: [&[u8]; 16] = [
    b"<title>",
    b"<title>",
    b"<title>",
    b"<TITLE>",
    b"<Title lang=en>",
    b"<title data-x='a>b' >",
    b"<title\n>",
    b"<title/>",
    b"<title a=>",
    b"<title a= >",
    b"<title a/>",
    b"<title a / b>",
    b"<title\0>",
    b"<title =x>",
    b"<title \"a\"='b'>",
    b"<title",
];
const TITLE_TEXT: [&[u8]; 24] = [
    b"Hello",
    b"Hello",
    b" ",
    b"\n\t",
    b"&amp;",
    b"&copy",
    b"&#x93;&#0;",
    b"&notin",
    b"\0",
    b"\xe9",
    b"\xc3\xa9",
    b"\xc3",
    b"\xe2\x82",
    b"<b>x</b>",
    b"</titlex>",
    b"</tit",
    b"<",
    b"</",
    b"&",
    b"\r",
    b"\xc2\xa0",
    b"\xef\xbb\xbf",
    b"<!-- c -->",
    b"</title1>",
];
const TITLE_END: [&[u8]; 10] = [
    b"</title>",
    b"</title>",
    b"</TITLE >",
    b"</title\n\t>",
    b"</title x>",
    b"</title/>",
    b"</title",
    b"</title ",
    b"",
    b"</tItLe>after",
];
const AFTER: [&[u8]; 5] = [
    b"",
    b"</head><body><p>text</p></body></html>",
    b"<title>second</title>",
    b"<body><svg><title>s</title></svg><h3><a href=/l>l</a></h3>",
    b"\xff\xfe",
];
const BOMS: [&[u8]; 5] = [b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"];
/// Bytes random mutations insert.
const ALPHABET: &[u8] = b"<>/!-?=\"' \t\n\r&#;titleTITLE\0\x80\xc3\xa9\xff";

/// One generated document.
fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut doc = rng.pick(&BOMS).to_vec();
    for _ in 0..rng.below(12) {
        doc.extend_from_slice(rng.pick(&SUBSET));
    }
    if rng.chance(6) {
        let at = rng.below(doc.len() + 1);
        doc.splice(at..at, rng.pick(&OUTSIDE).iter().copied());
    }
    match rng.below(40) {
        // Past the prescan window, the fast path's window, its start tag budget.
        0 => doc.resize(doc.len() + PRESCAN_BYTES, b' '),
        1 => doc.extend(std::iter::repeat_n(b'x', fast::MAX_FAST_BYTES)),
        2 => doc.extend(b"<p>".repeat(fast::MAX_START_TAGS + 1)),
        3 => doc.extend(b"<p>".repeat(fast::MAX_START_TAGS - 1)),
        _ => {}
    }
    if !rng.chance(10) {
        let start = if rng.chance(2) {
            b"<title>"
        } else {
            rng.pick(&TITLE_START)
        };
        doc.extend_from_slice(start);
        for _ in 0..rng.below(6) {
            doc.extend_from_slice(rng.pick(&TITLE_TEXT));
        }
        let end = if rng.chance(2) {
            b"</title>"
        } else {
            rng.pick(&TITLE_END)
        };
        doc.extend_from_slice(end);
    }
    doc.extend_from_slice(rng.pick(&AFTER));
    if rng.chance(4) {
        for _ in 0..=rng.below(3) {
            let at = rng.below(doc.len() + 1);
            let byte = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(3) {
                0 if at < doc.len() => {
                    doc.remove(at);
                }
                1 if at < doc.len() => doc[at] = byte,
                _ => doc.insert(at, byte),
            }
        }
    }
    doc
}

#[test]
fn generated_documents_agree() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut read_fast = 0;
    for round in 0..GENERATED {
        let doc = generate(&mut rng);
        let ct = CONTENT_TYPES[rng.below(CONTENT_TYPES.len())];
        compare(&doc, ct, None, round as u64);
        // Most documents under the common headers, where the fast path applies.
        let common = [None, Some("text/html"), Some("text/html; charset=utf-8")];
        let ct = common[round % common.len()];
        compare(&doc, ct, None, round as u64);
        if fast_path_reads(&doc, ct) {
            read_fast += 1;
        }
    }
    assert!(
        read_fast * 4 > GENERATED,
        "the fast path read only {read_fast} of {GENERATED} documents"
    );
}

#[test]
fn encodings_the_fast_path_takes() {
    for label in [
        "utf-8",
        "windows-1252",
        "koi8-r",
        "iso-8859-2",
        "x-user-defined",
    ] {
        let encoding = Encoding::for_label(label.as_bytes()).expect("known label");
        assert!(fast::applies_to(encoding), "{label}");
    }
    for label in [
        "shift_jis",
        "gb18030",
        "big5",
        "euc-kr",
        "utf-16le",
        "iso-2022-jp",
    ] {
        let encoding = Encoding::for_label(label.as_bytes()).expect("known label");
        assert!(!fast::applies_to(encoding), "{label}");
    }
}
