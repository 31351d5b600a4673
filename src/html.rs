//! Sans-IO title and link extraction with charset detection (encoding_rs): a fast path for
//! simple documents and lol_html for everything else, with the same results.
//!
//! This module owns everything between decoded body bytes and the strings a record needs:
//! charset detection, transcoding to UTF-8, the HTML tokenizer (lol_html, fed UTF-8 only), the
//! title rules, `--follow` link rules and character reference decoding.
//!
//! Title semantics follow ARCHITECTURE.md: charset from the BOM, else the Content-Type header,
//! else `<meta charset>`/`http-equiv` prescan of the first [`PRESCAN_BYTES`] bytes (the HTML
//! standard's "prescan a byte stream"), else windows-1252. The BOM goes first, as in the HTML
//! standard and every browser: a page that starts with a UTF-8 BOM is UTF-8 whatever the header
//! says. Then: the first `title` element in the HTML namespace outside `<template>` (lol_html's
//! tokenizer already keeps `<script>`, `<style>`, `<textarea>` and comments from producing
//! elements); entities decoded; ASCII whitespace stripped and collapsed (`document.title`);
//! `""` vs `None` distinct; capped at [`MAX_TITLE_BYTES`].
//!
//! Once the encoding is decided, two readers: `html/fast.rs` reads the title of a simple
//! document (UTF-8 or single-byte, plain tags, comments and doctypes before a plain
//! `<title>`) straight from its bytes, and a whole document without the bytes `<title` has no
//! title at all; `html/full.rs` (lol_html) reads everything else, from the document's first
//! byte, and every document with `--follow`. `html/differential.rs` holds them to the same
//! results.
//!
//! lol_html hands out raw text and attribute values (character references undecoded), so
//! references are decoded here with the standard's full named table (`html/entities.rs`), for
//! both readers.

#[cfg(test)]
mod differential;
mod entities;
mod fast;
mod full;

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};
use lol_html::Selector;

use self::fast::{Scan, Scanner};
use self::full::FullParser;

use crate::error::ErrorKind;

/// Longest title kept, in bytes of UTF-8 (cut on a char boundary; `title_truncated` set).
pub const MAX_TITLE_BYTES: usize = 4096;
/// How many leading bytes the meta prescan looks at.
pub const PRESCAN_BYTES: usize = 1024;
/// Most raw (undecoded, uncollapsed) title text buffered; beyond it the title is truncated.
const MAX_RAW_TITLE_BYTES: usize = 16 * MAX_TITLE_BYTES;
/// Longest byte-order mark (UTF-8).
const MAX_BOM_BYTES: usize = 3;

/// Errors from the HTML layer (only a bad `--follow` selector, caught at start-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtmlError {
    #[error("invalid CSS selector {0:?}: {1}")]
    BadSelector(String, String),
}

impl HtmlError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidUrl
    }
}

/// A validated `--follow` selector, parsed once and shared by all extractors.
#[derive(Clone, Debug)]
pub struct FollowSelector {
    css: String,
    selector: Selector,
}

impl FollowSelector {
    pub fn parse(css: &str) -> Result<Self, HtmlError> {
        let selector = css
            .parse::<Selector>()
            .map_err(|e| HtmlError::BadSelector(css.to_owned(), e.to_string()))?;
        Ok(Self {
            css: css.to_owned(),
            selector,
        })
    }

    /// The selector as given.
    pub fn as_str(&self) -> &str {
        &self.css
    }
}

/// What was found in one document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// `None`: no title element. `Some("")`: an empty one.
    pub title: Option<String>,
    pub title_truncated: bool,
    /// With a follow selector: the first matching element's `href` (entities decoded, raw:
    /// not yet resolved; `javascript:`, `mailto:` and fragment-only links skipped).
    pub link: Option<String>,
    /// `<base href>` when present (for resolving `link`).
    pub base_href: Option<String>,
}

/// True when a Content-Type value (or its absence) means "parse as HTML":
/// missing, `text/html`, `application/xhtml+xml` (case-insensitive, parameters ignored).
/// An empty value counts as missing.
pub fn is_html(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim_matches(is_ascii_ws);
    essence.is_empty()
        || essence.eq_ignore_ascii_case("text/html")
        || essence.eq_ignore_ascii_case("application/xhtml+xml")
}

/// The charset parameter of a Content-Type value, if encoding_rs knows it.
pub fn charset_from_content_type(content_type: &str) -> Option<&'static encoding_rs::Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name
            .trim_matches(is_ascii_ws)
            .eq_ignore_ascii_case("charset")
        {
            return None;
        }
        let value = value.trim_matches(is_ascii_ws);
        let value = value
            .strip_prefix('"')
            .map_or(value, |v| v.strip_suffix('"').unwrap_or(v));
        Encoding::for_label(value.as_bytes())
    })
}

fn is_ascii_ws(c: char) -> bool {
    c.is_ascii_whitespace()
}

fn is_ascii_ws_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

/// An attribute value as a URL string: references decoded, ASCII whitespace trimmed.
fn clean_href(raw: &str) -> Cow<'_, str> {
    match decode_references(raw, true) {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim_matches(is_ascii_ws)),
        Cow::Owned(s) => Cow::Owned(s.trim_matches(is_ascii_ws).to_owned()),
    }
}

/// False for links a crawler cannot follow: empty, fragment-only, `javascript:`, `mailto:`.
fn is_followable(href: &str) -> bool {
    if href.is_empty() || href.starts_with('#') {
        return false;
    }
    // The URL parser drops tabs and newlines anywhere, so `java\nscript:` is `javascript:`.
    let scheme: String = href
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .take_while(|&c| c != ':')
        .take("javascript".len() + 1)
        .collect();
    let has_colon = href.contains(':');
    !(has_colon
        && (scheme.eq_ignore_ascii_case("javascript") || scheme.eq_ignore_ascii_case("mailto")))
}

/// Streaming extractor for one document. Feed decoded body bytes as they arrive.
///
/// Simple documents are read by the fast path (`html/fast.rs`), everything else by lol_html
/// (`html/full.rs`); both give the same result ([`Extractor::without_fast_path`] is the
/// reference the tests and the fuzz target compare with).
pub struct Extractor {
    header_encoding: Option<&'static Encoding>,
    /// The `--follow` selector, moved into the parser's link handler when it starts.
    follow: Option<Selector>,
    /// Whether the fast path may read the document (never with `follow`).
    fast: bool,
    stage: Stage,
}

/// Where an [`Extractor`] is.
enum Stage {
    /// The encoding is not decided yet: the first bytes wait here.
    Undecided(Vec<u8>),
    /// The fast path reads the document; all of it so far waits here, from its first byte,
    /// in case the full parser must read it after all.
    Fast {
        pending: Vec<u8>,
        encoding: &'static Encoding,
        bom_len: usize,
        scanner: Scanner,
    },
    /// lol_html is reading the document (boxed: the parser's state machines are large).
    Parsing(Box<FullParser>),
    /// Everything wanted is known (the parser, if any, is gone).
    Done(Extracted),
}

impl Extractor {
    /// `content_type`: the response's Content-Type header value, if any.
    /// `follow`: hop 1 of a two-hop crawl: look for the first link matching this selector
    /// (the title is still extracted if seen, but is not waited for).
    pub fn new(content_type: Option<&str>, follow: Option<&FollowSelector>) -> Self {
        Self::with_paths(content_type, follow, follow.is_none())
    }

    /// Like [`Extractor::new`], but every document goes through lol_html, the full parser:
    /// the reference the fast path is tested and fuzzed against. Same results, more work.
    pub fn without_fast_path(content_type: Option<&str>, follow: Option<&FollowSelector>) -> Self {
        Self::with_paths(content_type, follow, false)
    }

    fn with_paths(content_type: Option<&str>, follow: Option<&FollowSelector>, fast: bool) -> Self {
        Self {
            header_encoding: content_type.and_then(charset_from_content_type),
            follow: follow.map(|f| f.selector.clone()),
            fast,
            stage: Stage::Undecided(Vec::new()),
        }
    }

    /// Feed the next body chunk. Returns `true` once everything wanted is known (without
    /// `follow`: the title is complete; with `follow`: the link is found; or lol_html gave up
    /// at its memory limit, so nothing more can be found): the caller stops reading the body.
    /// Until the encoding is known (up to [`PRESCAN_BYTES`] without a header charset or BOM)
    /// bytes are only buffered; so are they while the fast path reads a simple document
    /// (up to the end of its title, at most `fast::MAX_FAST_BYTES`).
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        match &mut self.stage {
            Stage::Done(_) => {}
            Stage::Parsing(parser) => {
                if parser.write(chunk) {
                    self.stop_parsing();
                }
            }
            Stage::Fast { pending, .. } => {
                pending.extend_from_slice(chunk);
                self.read_fast(false);
            }
            // The common case: the first chunk decides, and is read where it lies.
            Stage::Undecided(pending)
                if pending.is_empty() && decides(chunk, self.header_encoding) =>
            {
                self.decide(Vec::new(), chunk, false);
            }
            Stage::Undecided(pending) => {
                let wanted = PRESCAN_BYTES.saturating_sub(pending.len()).min(chunk.len());
                pending.extend_from_slice(&chunk[..wanted]);
                if decides(pending, self.header_encoding) {
                    let pending = std::mem::take(pending);
                    self.decide(pending, &chunk[wanted..], false);
                }
            }
        }
        matches!(self.stage, Stage::Done(_))
    }

    /// End of body (or reading stopped): the result.
    pub fn finish(mut self) -> Extracted {
        match &mut self.stage {
            Stage::Undecided(pending) => {
                let pending = std::mem::take(pending);
                self.decide(pending, &[], true);
            }
            Stage::Fast { .. } => self.read_fast(true),
            Stage::Parsing(_) | Stage::Done(_) => {}
        }
        match self.stage {
            Stage::Parsing(parser) => parser.finish(),
            Stage::Done(found) => found,
            Stage::Undecided(_) | Stage::Fast { .. } => Extracted::default(),
        }
    }

    /// Decides the encoding of the document so far, `pending` then `rest` (`pending` is
    /// empty, or holds at least the bytes that decide), and hands it to the fast path or the
    /// full parser. `last`: the document ends there (`rest` is then empty).
    fn decide(&mut self, mut pending: Vec<u8>, rest: &[u8], last: bool) {
        let buffered = !pending.is_empty();
        let head = if buffered { &pending } else { rest };
        let (encoding, bom_len) = detect_encoding(head, self.header_encoding);
        if !(self.fast && fast::applies_to(encoding)) {
            if buffered {
                self.hand_over(encoding, &pending[bom_len..], last);
                if let Stage::Parsing(parser) = &mut self.stage {
                    if parser.write(rest) {
                        self.stop_parsing();
                    }
                }
            } else {
                self.hand_over(encoding, &rest[bom_len..], last);
            }
            return;
        }
        let mut scanner = Scanner::default();
        if buffered {
            pending.extend_from_slice(rest);
        } else if self.read_fast_from(&mut scanner, encoding, &rest[bom_len..], last) {
            return;
        } else {
            pending = rest.to_vec();
        }
        self.stage = Stage::Fast {
            pending,
            encoding,
            bom_len,
            scanner,
        };
        if buffered {
            self.read_fast(last);
        }
    }

    /// The fast path reads what is buffered.
    fn read_fast(&mut self, last: bool) {
        let Stage::Fast {
            pending,
            encoding,
            bom_len,
            mut scanner,
        } = std::mem::replace(&mut self.stage, UNDECIDED)
        else {
            return;
        };
        if !self.read_fast_from(&mut scanner, encoding, &pending[bom_len..], last) {
            self.stage = Stage::Fast {
                pending,
                encoding,
                bom_len,
                scanner,
            };
        }
    }

    /// The fast path reads `doc`, the document so far after its byte-order mark: the title,
    /// or the full parser takes the whole document over (both set the stage); or `false`:
    /// it needs more bytes.
    fn read_fast_from(
        &mut self,
        scanner: &mut Scanner,
        encoding: &'static Encoding,
        doc: &[u8],
        last: bool,
    ) -> bool {
        match scanner.scan(doc) {
            Scan::Title(text) => self.stage = Stage::Done(fast_title(encoding, &doc[text])),
            Scan::More if !last => return false,
            Scan::More | Scan::Unsupported => self.hand_over(encoding, doc, last),
        }
        true
    }

    /// The fast path cannot read the document: lol_html reads it from `doc` (its first bytes
    /// after the byte-order mark on). Unless it is whole (`last`) and, in an ASCII-compatible
    /// encoding without `--follow`, holds no `<title` at all: then it has no title.
    fn hand_over(&mut self, encoding: &'static Encoding, doc: &[u8], last: bool) {
        if last && self.fast && encoding.is_ascii_compatible() && !fast::may_have_title(doc) {
            self.stage = Stage::Done(Extracted::default());
        } else {
            self.start_parsing(encoding, doc);
        }
    }

    /// lol_html reads the document from `doc` on (its first bytes after the byte-order mark).
    fn start_parsing(&mut self, encoding: &'static Encoding, doc: &[u8]) {
        let mut parser = Box::new(FullParser::new(encoding, self.follow.take()));
        let stopped = parser.write(doc);
        self.stage = Stage::Parsing(parser);
        if stopped {
            self.stop_parsing();
        }
    }

    /// lol_html stopped: keep its findings, free the parser.
    fn stop_parsing(&mut self) {
        if let Stage::Parsing(parser) = std::mem::replace(&mut self.stage, UNDECIDED) {
            self.stage = Stage::Done(parser.finish());
        }
    }
}

/// Whether `head`, the first bytes of a document, decide its encoding: a full prescan
/// window, or enough for a byte-order mark when the header names a charset or one is there.
fn decides(head: &[u8], header: Option<&'static Encoding>) -> bool {
    head.len() >= PRESCAN_BYTES
        || (head.len() >= MAX_BOM_BYTES && (header.is_some() || Encoding::for_bom(head).is_some()))
}

/// A placeholder stage while the real one is taken apart (holds no allocation).
const UNDECIDED: Stage = Stage::Undecided(Vec::new());

/// The fast path's result from the raw bytes of the title's text: decoded, then capped and
/// finished like lol_html's text (see `full.rs`).
fn fast_title(encoding: &'static Encoding, raw: &[u8]) -> Extracted {
    let (text, _) = encoding.decode_without_bom_handling(raw);
    let kept = floor_char_boundary(&text, MAX_RAW_TITLE_BYTES);
    let (title, truncated) = finish_title(&text[..kept]);
    Extracted {
        title: Some(title),
        title_truncated: truncated || kept < text.len(),
        link: None,
        base_href: None,
    }
}

/// The encoding of a document and the length of its byte-order mark: BOM, else the header's
/// charset, else the meta prescan of `head` (the first bytes), else windows-1252.
fn detect_encoding(head: &[u8], header: Option<&'static Encoding>) -> (&'static Encoding, usize) {
    if let Some((encoding, bom_len)) = Encoding::for_bom(head) {
        return (encoding, bom_len);
    }
    let encoding = header
        .or_else(|| prescan(&head[..head.len().min(PRESCAN_BYTES)]))
        .unwrap_or(WINDOWS_1252);
    (encoding, 0)
}

/// `document.title` from the raw text of the title element: references decoded, U+0000
/// replaced, ASCII whitespace stripped and collapsed, capped at [`MAX_TITLE_BYTES`].
fn finish_title(raw: &str) -> (String, bool) {
    let mut decoded = decode_references(raw, false);
    if decoded.contains('\0') {
        decoded = Cow::Owned(decoded.replace('\0', "\u{FFFD}"));
    }
    let mut title = String::with_capacity(decoded.len().min(MAX_TITLE_BYTES));
    for word in decoded.split_ascii_whitespace() {
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
        if title.len() > MAX_TITLE_BYTES {
            break;
        }
    }
    if title.len() <= MAX_TITLE_BYTES {
        return (title, false);
    }
    let cut = floor_char_boundary(&title, MAX_TITLE_BYTES);
    title.truncate(cut);
    let kept = title.trim_end_matches(is_ascii_ws).len();
    title.truncate(kept);
    (title, true)
}

/// The largest char boundary of `s` not above `index`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    (0..=index)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// Decodes character references as the HTML tokenizer does. `in_attribute` applies the
/// attribute rule for legacy references: `&copy=` and `&copyx` stay as written there.
fn decode_references(input: &str, in_attribute: bool) -> Cow<'_, str> {
    let Some(first) = input.find('&') else {
        return Cow::Borrowed(input);
    };
    let mut out = String::with_capacity(input.len());
    out.push_str(&input[..first]);
    let mut rest = &input[first..];
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_reference(after, in_attribute) {
            Some((replacement, consumed)) => {
                replacement.push_to(&mut out);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// What a character reference stands for.
enum Replacement {
    Char(char),
    Str(&'static str),
}

impl Replacement {
    fn push_to(&self, out: &mut String) {
        match self {
            Replacement::Char(c) => out.push(*c),
            Replacement::Str(s) => out.push_str(s),
        }
    }
}

/// The reference at the start of `s` (just after `&`) and how many bytes it used, or `None`
/// when the `&` is literal.
fn decode_reference(s: &str, in_attribute: bool) -> Option<(Replacement, usize)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        return decode_numeric(bytes).map(|(c, used)| (Replacement::Char(c), used));
    }
    let run = bytes
        .iter()
        .take(entities::MAX_NAME_LEN)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if run == 0 {
        return None;
    }
    if bytes.get(run) == Some(&b';') {
        if let Some(value) = lookup_entity(&s[..=run]) {
            return Some((Replacement::Str(value), run + 1));
        }
    }
    // Without a semicolon only the legacy names match, longest first.
    for len in (1..=run.min(entities::MAX_LEGACY_NAME_LEN)).rev() {
        if let Some(value) = lookup_entity(&s[..len]) {
            let next = bytes.get(len).copied();
            if in_attribute && next.is_some_and(|b| b == b'=' || b.is_ascii_alphanumeric()) {
                return None;
            }
            return Some((Replacement::Str(value), len));
        }
    }
    None
}

fn lookup_entity(name: &str) -> Option<&'static str> {
    entities::ENTITIES
        .binary_search_by(|(key, _)| (*key).cmp(name))
        .ok()
        .map(|i| entities::ENTITIES[i].1)
}

/// `#...` numeric references: the code point per the standard's replacement rules.
fn decode_numeric(bytes: &[u8]) -> Option<(char, usize)> {
    let hex = matches!(bytes.get(1), Some(b'x' | b'X'));
    let start = if hex { 2 } else { 1 };
    let radix = if hex { 16 } else { 10 };
    let mut value: u32 = 0;
    let mut digits = 0;
    for &b in &bytes[start.min(bytes.len())..] {
        let Some(d) = char::from(b).to_digit(radix) else {
            break;
        };
        // Saturate above the Unicode range: any larger value means U+FFFD anyway.
        value = value.saturating_mul(radix).saturating_add(d).min(0x11_0000);
        digits += 1;
    }
    if digits == 0 {
        return None;
    }
    let mut used = start + digits;
    if bytes.get(used) == Some(&b';') {
        used += 1;
    }
    Some((numeric_reference_char(value), used))
}

/// Windows-1252 meanings of 0x80..=0x9F, which numeric references in that range take.
const C1_REMAP: [u16; 32] = [
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
];

fn numeric_reference_char(value: u32) -> char {
    match value {
        0x80..=0x9F => char::from_u32(u32::from(C1_REMAP[(value - 0x80) as usize])),
        0 => None,
        _ => char::from_u32(value),
    }
    .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The HTML standard's "prescan a byte stream to determine its encoding" over `head`.
fn prescan(head: &[u8]) -> Option<&'static Encoding> {
    // The prescan answers only from a `<meta` tag: without those bytes (most pages that are
    // not sent with a charset, e.g. error pages) nothing between the `<`s can matter.
    if !fast::holds_tag_start(head, b"<meta") {
        return None;
    }
    prescan_tags(head)
}

/// The prescan's walk over the tags of `head`.
fn prescan_tags(head: &[u8]) -> Option<&'static Encoding> {
    let mut p = 0;
    while p < head.len() {
        // Every step of the prescan starts at a `<`; other bytes are passed over.
        p += head[p..].iter().position(|&b| b == b'<')?;
        let rest = &head[p..];
        if rest.starts_with(b"<!--") {
            // The `-->` may share its dashes with `<!--`: `<!-->` is a whole comment.
            p += 2 + find(&rest[2..], b"-->")? + 2;
        } else if rest.len() > 5
            && rest[..5].eq_ignore_ascii_case(b"<meta")
            && (is_ascii_ws_byte(rest[5]) || rest[5] == b'/')
        {
            p += 5;
            if let Some(encoding) = prescan_meta(head, &mut p)? {
                return Some(encoding);
            }
        } else if rest.len() > 1
            && (rest[0] == b'<' && rest[1].is_ascii_alphabetic()
                || rest.starts_with(b"</") && rest.get(2).is_some_and(u8::is_ascii_alphabetic))
        {
            p += rest
                .iter()
                .position(|&b| is_ascii_ws_byte(b) || b == b'>')?;
            while prescan_attribute(head, &mut p)?.is_some() {}
        } else if rest.starts_with(b"<!") || rest.starts_with(b"</") || rest.starts_with(b"<?") {
            p += rest.iter().position(|&b| b == b'>')?;
        }
        p += 1;
    }
    None
}

/// A `<meta>` tag's attributes (from `*p`, just after `<meta`): `Some(Some(encoding))` when
/// it declares one, `Some(None)` when not, `None` when the prescan ran out of bytes.
fn prescan_meta(head: &[u8], p: &mut usize) -> Option<Option<&'static Encoding>> {
    enum Charset {
        Null,
        Failure,
        Found(&'static Encoding),
    }
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut got_pragma = false;
    let mut need_pragma: Option<bool> = None;
    let mut charset = Charset::Null;
    while let Some((name, value)) = prescan_attribute(head, p)? {
        if seen.contains(&name) {
            continue;
        }
        match name.as_slice() {
            b"http-equiv" => got_pragma |= value == b"content-type",
            b"content" => {
                if let (Charset::Null, Some(encoding)) = (&charset, charset_from_meta(&value)) {
                    charset = Charset::Found(encoding);
                    need_pragma = Some(true);
                }
            }
            b"charset" => {
                charset = Encoding::for_label(&value).map_or(Charset::Failure, Charset::Found);
                need_pragma = Some(false);
            }
            _ => {}
        }
        seen.push(name);
    }
    let found = match (need_pragma, charset) {
        (Some(true), Charset::Found(encoding)) if got_pragma => Some(encoding),
        (Some(false), Charset::Found(encoding)) => Some(encoding),
        _ => None,
    };
    Some(found.map(|encoding| {
        if encoding == UTF_16BE || encoding == UTF_16LE {
            UTF_8
        } else if encoding == encoding_rs::X_USER_DEFINED {
            WINDOWS_1252
        } else {
            encoding
        }
    }))
}

/// The standard's "get an attribute" for the prescan: `Some(Some((name, value)))` (both
/// ASCII-lowercased), `Some(None)` at the tag's end, `None` when out of bytes.
fn prescan_attribute(head: &[u8], p: &mut usize) -> Option<Option<(Vec<u8>, Vec<u8>)>> {
    let at = |i: usize| head.get(i).copied();
    while is_ascii_ws_byte(at(*p)?) || at(*p)? == b'/' {
        *p += 1;
    }
    if at(*p)? == b'>' {
        return Some(None);
    }
    let mut name = Vec::new();
    let mut value = Vec::new();
    loop {
        let b = at(*p)?;
        match b {
            b'=' if !name.is_empty() => {
                *p += 1;
                break;
            }
            b'/' | b'>' => return Some(Some((name, value))),
            _ if is_ascii_ws_byte(b) => {
                while is_ascii_ws_byte(at(*p)?) {
                    *p += 1;
                }
                if at(*p)? != b'=' {
                    return Some(Some((name, value)));
                }
                *p += 1;
                break;
            }
            _ => name.push(b.to_ascii_lowercase()),
        }
        *p += 1;
    }
    while is_ascii_ws_byte(at(*p)?) {
        *p += 1;
    }
    let b = at(*p)?;
    if b == b'"' || b == b'\'' {
        loop {
            *p += 1;
            let c = at(*p)?;
            if c == b {
                *p += 1;
                return Some(Some((name, value)));
            }
            value.push(c.to_ascii_lowercase());
        }
    }
    if b == b'>' {
        return Some(Some((name, value)));
    }
    loop {
        let c = at(*p)?;
        if is_ascii_ws_byte(c) || c == b'>' {
            return Some(Some((name, value)));
        }
        value.push(c.to_ascii_lowercase());
        *p += 1;
    }
}

/// The standard's "extracting a character encoding from a meta element" (`content="...;
/// charset=..."`).
fn charset_from_meta(content: &[u8]) -> Option<&'static Encoding> {
    let mut p = 0;
    loop {
        p += find_ignore_case(&content[p..], b"charset")? + b"charset".len();
        while content.get(p).copied().is_some_and(is_ascii_ws_byte) {
            p += 1;
        }
        if content.get(p) != Some(&b'=') {
            continue;
        }
        p += 1;
        while content.get(p).copied().is_some_and(is_ascii_ws_byte) {
            p += 1;
        }
        let rest = &content[p..];
        return match rest.first()? {
            &quote @ (b'"' | b'\'') => {
                let end = rest[1..].iter().position(|&c| c == quote)?;
                Encoding::for_label(&rest[1..=end])
            }
            _ => {
                let end = rest
                    .iter()
                    .position(|&c| is_ascii_ws_byte(c) || c == b';')
                    .unwrap_or(rest.len());
                Encoding::for_label(&rest[..end])
            }
        };
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one extraction with the body cut into `chunk`-byte pieces; also reports whether
    /// `feed` asked to stop.
    /// Also runs the full parser alone: both paths must agree, `feed`'s answers included.
    fn run(body: &[u8], ct: Option<&str>, follow: Option<&str>, chunk: usize) -> (Extracted, bool) {
        let follow = follow.map(|css| FollowSelector::parse(css).expect("valid selector"));
        let fast = run_one(Extractor::new(ct, follow.as_ref()), body, chunk);
        let full = run_one(
            Extractor::without_fast_path(ct, follow.as_ref()),
            body,
            chunk,
        );
        assert_eq!(
            fast,
            full,
            "fast path and full parser differ ({chunk}-byte pieces, {ct:?}) on {:?}",
            String::from_utf8_lossy(body)
        );
        fast
    }

    /// Feeds `body` in `chunk`-byte pieces until `feed` says enough; the result and whether
    /// it said so.
    fn run_one(mut ex: Extractor, body: &[u8], chunk: usize) -> (Extracted, bool) {
        let mut stopped = false;
        for piece in body.chunks(chunk.max(1)) {
            if ex.feed(piece) {
                stopped = true;
                break;
            }
        }
        (ex.finish(), stopped)
    }

    /// Extracts whole, one byte at a time and in 7-byte pieces; all three must agree.
    fn extract_with(body: &[u8], ct: Option<&str>, follow: Option<&str>) -> Extracted {
        let (whole, stopped_whole) = run(body, ct, follow, body.len());
        for chunk in [1, 7] {
            let (split, stopped) = run(body, ct, follow, chunk);
            assert_eq!(split, whole, "{chunk}-byte pieces differ from whole");
            assert_eq!(
                stopped, stopped_whole,
                "{chunk}-byte pieces stop differently"
            );
        }
        whole
    }

    fn title_of(body: &[u8], ct: Option<&str>) -> Option<String> {
        extract_with(body, ct, None).title
    }

    fn title(body: &str) -> Option<String> {
        title_of(body.as_bytes(), None)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn is_html_cases() {
        assert!(is_html(None));
        assert!(is_html(Some("text/html")));
        assert!(is_html(Some("TEXT/HTML; charset=utf-8")));
        assert!(is_html(Some(" application/xhtml+xml ")));
        assert!(is_html(Some("")));
        assert!(!is_html(Some("application/json")));
        assert!(!is_html(Some("text/plain; charset=utf-8")));
        assert!(!is_html(Some("text/htmlx")));
    }

    #[test]
    fn charset_parameter() {
        let ct = charset_from_content_type;
        assert_eq!(ct("text/html; charset=utf-8"), Some(UTF_8));
        assert_eq!(ct("text/html;CHARSET=\"ISO-8859-1\""), Some(WINDOWS_1252));
        assert_eq!(
            ct("text/html; q=1; charset = shift_jis"),
            Some(encoding_rs::SHIFT_JIS)
        );
        assert_eq!(ct("text/html; charset=bogus"), None);
        assert_eq!(ct("text/html"), None);
        assert_eq!(ct("charset=utf-8"), None, "the type itself is no parameter");
    }

    #[test]
    fn charset_from_header() {
        let body = b"<title>\xcf\xf0\xe8\xe2\xe5\xf2</title>";
        let ct = Some("text/html; charset=windows-1251");
        assert_eq!(title_of(body, ct), some("Привет"));
    }

    #[test]
    fn header_charset_beats_meta() {
        let body = b"<meta charset=iso-8859-2><title>\xcf\xf0</title>";
        assert_eq!(
            title_of(body, Some("text/html; charset=windows-1251")),
            some("Пр")
        );
        assert_eq!(title_of(body, None), some("Ďđ"));
    }

    #[test]
    fn charset_from_bom() {
        let mut utf8 = b"\xef\xbb\xbf<title>caf\xc3\xa9</title>".to_vec();
        assert_eq!(title_of(&utf8, None), some("café"));
        // The BOM wins over the header, as in browsers.
        assert_eq!(
            title_of(&utf8, Some("text/html; charset=iso-8859-1")),
            some("café")
        );
        utf8.truncate(3);
        assert_eq!(title_of(&utf8, None), None);

        let text = "<title>Žluť</title>";
        let mut le = vec![0xff, 0xfe];
        let mut be = vec![0xfe, 0xff];
        for unit in text.encode_utf16() {
            le.extend_from_slice(&unit.to_le_bytes());
            be.extend_from_slice(&unit.to_be_bytes());
        }
        assert_eq!(title_of(&le, None), some("Žluť"));
        assert_eq!(title_of(&be, None), some("Žluť"));
    }

    #[test]
    fn charset_from_meta_charset() {
        let body = b"<!doctype html><html><head><META CHARSET='koi8-r'>\
                     <title>\xf0\xd2\xc9\xd7\xc5\xd4</title>";
        assert_eq!(title_of(body, Some("text/html")), some("Привет"));
    }

    #[test]
    fn charset_from_meta_http_equiv() {
        let body = b"<head><meta http-equiv=\"Content-Type\" content=\"text/html; \
                     charset=Shift_JIS\"><title>\x93\xfa\x96\x7b</title>";
        assert_eq!(title_of(body, None), some("日本"));
        // Attribute order does not matter.
        let body = b"<meta content='text/html;charset=shift_jis' http-equiv=content-type>\
                     <title>\x93\xfa\x96\x7b</title>";
        assert_eq!(title_of(body, None), some("日本"));
    }

    #[test]
    fn meta_content_without_http_equiv_is_ignored() {
        let body = b"<meta content=\"text/html; charset=shift_jis\"><title>\x93x\x94</title>";
        assert_eq!(title_of(body, None), some("\u{201c}x\u{201d}"));
    }

    #[test]
    fn meta_in_comment_or_past_prescan_is_ignored() {
        let body = b"<!-- <meta charset=utf-8> --><title>\x93q\x94</title>";
        assert_eq!(title_of(body, None), some("\u{201c}q\u{201d}"));
        let body = b"<!--><meta charset=utf-8><title>\xc3\xa9</title>";
        assert_eq!(
            title_of(body, None),
            some("é"),
            "`<!-->` is a whole comment"
        );

        let mut late = b"<!doctype html>".to_vec();
        late.resize(PRESCAN_BYTES, b' ');
        late.extend_from_slice(b"<meta charset=utf-8><title>\xc3\xa9</title>");
        assert_eq!(title_of(&late, None), some("Ã©"));
    }

    #[test]
    fn meta_inside_attribute_value_is_ignored() {
        let body = b"<div title='<meta charset=utf-8>'><title>\xc3\xa9</title>";
        assert_eq!(title_of(body, None), some("Ã©"));
    }

    #[test]
    fn meta_utf16_means_utf8() {
        let body = b"<meta charset=utf-16le><title>\xc3\xa9</title>";
        assert_eq!(title_of(body, None), some("é"));
    }

    #[test]
    fn default_is_windows_1252() {
        let body = b"<title>\x93Quoted\x94 \x80 caf\xe9</title>";
        assert_eq!(title_of(body, None), some("\u{201c}Quoted\u{201d} € café"));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let body = b"<title>a\xff\xc3b\xe2\x82</title>";
        let t = title_of(body, Some("text/html; charset=utf-8")).expect("title");
        assert_eq!(t, "a\u{fffd}\u{fffd}b\u{fffd}");
    }

    #[test]
    fn prescan_rules() {
        assert_eq!(prescan(b"<meta charset=\"utf-8\">"), Some(UTF_8));
        assert_eq!(prescan(b"<meta/charset=utf-8>"), Some(UTF_8));
        assert_eq!(
            prescan(b"<meta charset=x-user-defined>"),
            Some(WINDOWS_1252)
        );
        assert_eq!(
            prescan(b"<meta charset=nonsense content='charset=utf-8'>"),
            None
        );
        assert_eq!(prescan(b"<metadata charset=utf-8>"), None);
        assert_eq!(prescan(b"<meta charset=utf-8"), None, "unterminated");
        assert_eq!(
            prescan(b"<?xml charset=utf-8><meta charset=koi8-r>"),
            Some(encoding_rs::KOI8_R)
        );
        assert_eq!(
            prescan(b"<meta http-equiv=content-type content='charset = \"euc-kr\"'>"),
            Some(encoding_rs::EUC_KR)
        );
        assert_eq!(
            prescan(b"<meta http-equiv=content-type content='charsetx; charset=gbk'>"),
            Some(encoding_rs::GBK)
        );
    }

    /// Skipping the walk when `head` holds no `<meta` changes no answer.
    #[test]
    fn prescan_without_meta_bytes_finds_nothing() {
        let parts: [&[u8]; 12] = [
            b"<META charset=koi8-r>",
            b"<!-- <meta charset=utf-8> -->",
            b"<a title='<meta charset=utf-8>'>",
            b"<meta",
            b"<me",
            b"ta charset=iso-8859-2>",
            b" http-equiv=content-type content='text/html; charset=gbk'>",
            b"<!--",
            b"-->",
            b"<?xml charset=utf-8>",
            b"<p>",
            b"x",
        ];
        let mut checked = 0;
        for a in parts {
            for b in parts {
                for c in parts {
                    let head = [a, b, c].concat();
                    assert_eq!(prescan(&head), prescan_tags(&head), "{head:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 12 * 12 * 12);
    }

    #[test]
    fn title_in_script_string_is_not_taken() {
        let body = "<script>var s = '<title>fake</title>';</script><title>real</title>";
        assert_eq!(title(body), some("real"));
        let body = "<script>document.write('<title>fake</title>')</script>";
        assert_eq!(title(body), None);
    }

    #[test]
    fn title_in_comment_style_textarea_is_not_taken() {
        assert_eq!(
            title("<!-- <title>no</title> --><title>yes</title>"),
            some("yes")
        );
        assert_eq!(
            title("<style>/*<title>no</title>*/</style><title>yes</title>"),
            some("yes")
        );
        assert_eq!(
            title("<textarea><title>no</title></textarea><title>yes</title>"),
            some("yes")
        );
        assert_eq!(
            title("<noscript><title>no</title></noscript><title>yes</title>"),
            some("yes")
        );
    }

    #[test]
    fn foreign_and_template_titles_are_not_taken() {
        let body = "<svg><title>icon</title></svg><math><title>m</title></math><title>page</title>";
        assert_eq!(title(body), some("page"));
        let body = "<template><title>tpl</title></template><title>page</title>";
        assert_eq!(title(body), some("page"));
        let body = "<template><template></template><title>tpl</title></template><title>p</title>";
        assert_eq!(title(body), some("p"));
        assert_eq!(title("<svg><title>only icon</title></svg>"), None);
    }

    #[test]
    fn more_traps() {
        assert_eq!(title("<title/>Self closing</title>"), some("Self closing"));
        assert_eq!(
            title("<svg><title/></svg><title>page</title>"),
            some("page")
        );
        assert_eq!(
            title("<xmp><title>no</title></xmp><title>yes</title>"),
            some("yes")
        );
        assert_eq!(
            title("<iframe><title>no</title></iframe><title>yes</title>"),
            some("yes")
        );
        assert_eq!(title("<plaintext><title>no</title>"), None);
        assert_eq!(title("<title>a</title ><title>b</title>"), some("a"));
        assert_eq!(title("<title>x </titlex> y</title>"), some("x </titlex> y"));
    }

    #[test]
    fn upper_case_and_attributes() {
        assert_eq!(
            title("<HTML><HEAD><TITLE>Upper</TITLE></HEAD>"),
            some("Upper")
        );
        assert_eq!(title("<Title lang=en>Mixed</tItLe>"), some("Mixed"));
    }

    #[test]
    fn only_the_first_title_counts() {
        assert_eq!(
            title("<title>one</title><body><title>two</title>"),
            some("one")
        );
        assert_eq!(title("<body><p>text</p><title>late</title>"), some("late"));
    }

    #[test]
    fn title_markup_is_text() {
        assert_eq!(
            title("<title>a <b>bold</b> <!-- c --></title>"),
            some("a <b>bold</b> <!-- c -->")
        );
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(
            title("<title>Tom &amp; Jerry &mdash; &quot;hi&quot; &lt;3 &hellip;</title>"),
            some("Tom & Jerry — \"hi\" <3 …")
        );
        assert_eq!(
            title("<title>&copy 2024 &eacute;t&eacute;</title>"),
            some("© 2024 été")
        );
        assert_eq!(title("<title>&#65;&#x42;&#X43;&#68</title>"), some("ABCD"));
        assert_eq!(
            title("<title>&#0;&#xD800;&#x110000;&#99999999999;</title>"),
            some("\u{fffd}".repeat(4).as_str())
        );
        assert_eq!(title("<title>&#x80;&#150;&#x9d;</title>"), some("€–\u{9d}"));
        assert_eq!(
            title("<title>&notit; &notin; &bogus; & &# &#x;</title>"),
            some("¬it; ∉ &bogus; & &# &#x;")
        );
        assert_eq!(
            title("<title>&NotNestedGreaterGreater;&fjlig;</title>"),
            some("\u{2aa2}\u{338}fj")
        );
        assert_eq!(
            title("<title>a&nbsp;b</title>"),
            some("a\u{a0}b"),
            "NBSP is not ASCII whitespace"
        );
        assert_eq!(title("<title>a&#32;&#9; b</title>"), some("a b"));
        assert_eq!(title("<title>nul\0here</title>"), some("nul\u{fffd}here"));
    }

    #[test]
    fn attribute_reference_rules() {
        assert_eq!(
            decode_references("/a?x=1&copy=2&amp;y", true),
            "/a?x=1&copy=2&y"
        );
        assert_eq!(decode_references("&copyx &copy &copy;", true), "&copyx © ©");
        assert_eq!(decode_references("&copyx", false), "©x");
        assert_eq!(decode_references("no refs", false), "no refs");
    }

    #[test]
    fn entity_table_is_sorted_and_complete() {
        assert!(entities::ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(entities::ENTITIES.len(), 2231);
        for name in [
            "amp;", "lt;", "gt;", "quot;", "apos;", "nbsp;", "ndash;", "euro;", "trade;",
        ] {
            assert!(lookup_entity(name).is_some(), "{name}");
        }
    }

    #[test]
    fn whitespace_is_stripped_and_collapsed() {
        assert_eq!(
            title("<title>\n\t  Hello \r\n  World \x0c</title>"),
            some("Hello World")
        );
        let ideographic = "<title>\u{3000}wide\u{3000}</title>".as_bytes();
        assert_eq!(
            title_of(ideographic, Some("text/html; charset=utf-8")),
            some("\u{3000}wide\u{3000}")
        );
    }

    #[test]
    fn empty_versus_missing() {
        assert_eq!(title("<title></title>"), some(""));
        assert_eq!(title("<title> \n </title>"), some(""));
        assert_eq!(title("<html><body>no title</body></html>"), None);
        assert_eq!(title(""), None);
    }

    #[test]
    fn unclosed_title_runs_to_the_end() {
        let (ex, stopped) = run(b"<title>open ended <b>x", None, None, 5);
        assert!(!stopped);
        assert_eq!(ex.title, some("open ended <b>x"));
    }

    #[test]
    fn long_titles_are_truncated_on_a_char_boundary() {
        let exact = format!("<title>{}</title>", "a".repeat(MAX_TITLE_BYTES));
        let ex = extract_with(exact.as_bytes(), None, None);
        assert_eq!(ex.title.map(|t| t.len()), Some(MAX_TITLE_BYTES));
        assert!(!ex.title_truncated);

        let long = format!("<title>{}</title>", "é".repeat(MAX_TITLE_BYTES));
        let ex = extract_with(long.as_bytes(), Some("text/html;charset=utf-8"), None);
        let t = ex.title.expect("title");
        assert!(ex.title_truncated);
        assert_eq!(t.len(), MAX_TITLE_BYTES);
        assert!(t.chars().all(|c| c == 'é'));

        let odd = format!("<title>x{}</title>", "é".repeat(MAX_TITLE_BYTES));
        let ex = extract_with(odd.as_bytes(), Some("text/html;charset=utf-8"), None);
        assert_eq!(ex.title.map(|t| t.len()), Some(MAX_TITLE_BYTES - 1));

        let huge = format!("<title>{}</title>", " ".repeat(MAX_RAW_TITLE_BYTES + 10));
        let ex = extract_with(huge.as_bytes(), None, None);
        assert_eq!(ex.title, some(""));
        assert!(ex.title_truncated);
    }

    #[test]
    fn feed_stops_at_the_title_end() {
        let mut ex = Extractor::new(Some("text/html; charset=utf-8"), None);
        assert!(!ex.feed(b"<html><head><ti"));
        assert!(!ex.feed(b"tle>Hel"));
        assert!(!ex.feed(b"lo</ti"));
        assert!(ex.feed(b"tle><body>"));
        assert!(ex.feed(b"<title>ignored</title>"));
        assert_eq!(ex.finish().title, some("Hello"));
    }

    #[test]
    fn huge_tag_before_the_title_is_streamed_not_buffered() {
        let mut body = b"<html><body><div data-x='".to_vec();
        body.resize(body.len() + full::MAX_PARSER_MEMORY + 1, b'a');
        body.extend_from_slice(b"'><title>after</title>");
        let (ex, stopped) = run(&body, Some("text/html; charset=utf-8"), None, 64 * 1024);
        assert!(stopped);
        assert_eq!(ex.title, some("after"));
    }

    #[test]
    fn short_documents_decide_at_finish() {
        let mut ex = Extractor::new(None, None);
        assert!(
            !ex.feed(b"<title>t</title>"),
            "still waiting for the prescan window"
        );
        assert_eq!(ex.finish().title, some("t"));
    }

    #[test]
    fn bad_selectors_are_rejected() {
        for css in ["h3 >", "a[", "", "p:hover"] {
            let err = FollowSelector::parse(css).expect_err(css);
            assert!(matches!(err, HtmlError::BadSelector(ref s, _) if s == css));
            assert_eq!(err.kind(), ErrorKind::InvalidUrl);
        }
        assert_eq!(
            FollowSelector::parse("h3 a").expect("valid").as_str(),
            "h3 a"
        );
    }

    const BLOG: &str = r##"<html><head><title>Blog &amp; co</title>
        <base href=" /blog/ "><base href="/other/"></head><body>
        <h3><span><a href="/nested">nested</a></span></h3>
        <div class="post"><a name="anchor">no href</a></div>
        <h3><a>no href</a></h3>
        <h3><a href="javascript:void(0)">js</a></h3>
        <h3><a href=" MAILTO:me@example.com">mail</a></h3>
        <h3><a href="#top">top</a></h3>
        <h3><a href="  ">blank</a></h3>
        <h3><a href="java&#10;script:alert(1)">sneaky js</a></h3>
        <div class="post"><a href="/posts/1?a=1&amp;b=2">first</a></div>
        <h3><a href="/posts/2">second</a></h3>
        </body></html>"##;

    #[test]
    fn follow_descendant_selector() {
        let ex = extract_with(BLOG.as_bytes(), None, Some("h3 a"));
        assert_eq!(ex.link, some("/nested"));
        assert_eq!(ex.base_href, some("/blog/"));
        assert_eq!(ex.title, some("Blog & co"));
    }

    #[test]
    fn follow_child_selector_skips_unfollowable_links() {
        let ex = extract_with(BLOG.as_bytes(), None, Some("h3 > a"));
        assert_eq!(ex.link, some("/posts/2"));
    }

    #[test]
    fn follow_class_and_attribute_selector() {
        let ex = extract_with(BLOG.as_bytes(), None, Some(".post a[href]"));
        assert_eq!(ex.link, some("/posts/1?a=1&b=2"));
    }

    #[test]
    fn follow_without_match() {
        let ex = extract_with(BLOG.as_bytes(), None, Some("article a"));
        assert_eq!(ex.link, None);
        assert_eq!(ex.title, some("Blog & co"));
    }

    #[test]
    fn follow_stops_at_the_link_not_the_title() {
        let follow = FollowSelector::parse("h3 a").expect("valid");
        let mut ex = Extractor::new(Some("text/html; charset=utf-8"), Some(&follow));
        assert!(!ex.feed(b"<title>T</title><p>"));
        assert!(ex.feed(b"<h3><a href=/x>x</a></h3>"));
        let ex = ex.finish();
        assert_eq!((ex.title, ex.link), (some("T"), some("/x")));
    }

    #[test]
    fn followable_links() {
        assert!(is_followable("/a"));
        assert!(is_followable("https://example.com/#frag"));
        assert!(is_followable("javascript.html"));
        assert!(is_followable("mailtofoo/bar:baz"));
        assert!(!is_followable("JavaScript:x"));
        assert!(!is_followable("mailto:x@y"));
        assert!(!is_followable("#"));
        assert!(!is_followable(""));
    }

    /// Deterministic mutations of the trap fixtures: whole and randomly split feeds agree
    /// and the output keeps its invariants (an in-tree complement to the fuzz target).
    #[test]
    fn random_mutations_split_like_whole() {
        let seeds: [&[u8]; 4] = [
            BLOG.as_bytes(),
            b"<!-- x --><script>'<title>s</title>'</script><svg><title>i</title></svg>\
              <TITLE> real &#x93;&#0;&notin &copy</TITLE>",
            b"<meta http-equiv=content-type content='charset=koi8-r'><title>\xf0\xd2</title>",
            b"\xfe\xff\x00<\x00t\x00i\x00t\x00l\x00e\x00>\x00y",
        ];
        let alphabet: &[u8] = b"<>/!-&#;=\"' \ntitlemeta\xc3\xa9\x93\xff\x00";
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let follow = FollowSelector::parse("h3 a").expect("valid");
        for round in 0..600 {
            let mut doc = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % (doc.len() + 1);
                match next() % 3 {
                    0 if at < doc.len() => {
                        doc.remove(at);
                    }
                    1 if at < doc.len() => {
                        doc[at] = alphabet[(next() as usize) % alphabet.len()];
                    }
                    _ => doc.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let follow = (round % 2 == 1).then_some(&follow);
            let whole = {
                let mut ex = Extractor::new(None, follow);
                ex.feed(&doc);
                ex.finish()
            };
            let mut ex = Extractor::new(None, follow);
            let mut rest = &doc[..];
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at((1 + next() as usize % 11).min(rest.len()));
                rest = tail;
                if ex.feed(piece) {
                    break;
                }
            }
            let split = ex.finish();
            assert_eq!(split, whole, "document {:?}", String::from_utf8_lossy(&doc));
            if let Some(t) = &whole.title {
                assert!(t.len() <= MAX_TITLE_BYTES);
                assert_eq!(t.trim_matches(is_ascii_ws), t);
                assert!(!t.contains("  "));
            }
        }
    }

    #[test]
    fn extractor_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Extractor>();
        assert_send::<FollowSelector>();
    }
}
