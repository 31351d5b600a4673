//! The fast path: the first title of a simple document read straight from its bytes, without
//! lol_html, with exactly the result the full parser (`full.rs`) gives; or "cannot tell", and
//! the full parser reads the document from its first byte.
//!
//! **When it applies.** No `--follow` (the link search needs the whole tokenizer and its
//! stack of open elements), and the document's encoding is UTF-8 or a single-byte encoding
//! ([`applies_to`]). In those encodings every byte below 0x80 decodes to the same ASCII
//! character wherever it stands, and no byte at or above 0x80 decodes to ASCII (a UTF-8
//! sequence cut short by an ASCII byte ends in U+FFFD and the ASCII byte is read again). The
//! tokenizer only ever compares characters with ASCII ones, and in every state it passes
//! through here one non-ASCII character leads to the same state as a run of them: so tokens
//! start and end at the same ASCII bytes in the raw document as in the UTF-8 lol_html reads.
//!
//! **The subset.** Up to the title, the scanner reads what lol_html reads in its data state
//! and what leaves it there:
//! - text, including a `<` that starts no tag;
//! - comments (`<!-- ... -->`, ended like the tokenizer ends them: `-->`, `--!>`, or `<!-->`
//!   and `<!--->`), doctypes and bogus comments (`<!...>`, `<?...>`, `</ ...>`: all end at the
//!   first `>`), `</>`;
//! - end tags of any name (in the HTML namespace lol_html's tree builder simulator ignores
//!   them) and start tags of any name except [`SPECIAL_START_TAGS`]: those are the ones that
//!   switch lol_html's text state (script, style, textarea, ...), enter foreign content (svg,
//!   math) or move the extractor's template depth. Tags are read with the tokenizer's tag and
//!   attribute states, so a `>` or `<title` inside a quoted attribute value is seen as such.
//!   At most [`MAX_START_TAGS`] of them, which keeps lol_html's stack of open elements (that
//!   the fast path stands in for) far below its memory limit.
//!
//! Then a `<title` start tag, not self-closing and without an attribute whose `=` is
//! directly followed by `>` (lol_html reads the text after such a tag as data, not RCDATA);
//! its text runs, as RCDATA, to the first `</title` (any case) followed by optional ASCII
//! whitespace and `>`. An end tag with attributes or a `/` sends the document to the full
//! parser. The title's end must lie in the first [`MAX_FAST_BYTES`] bytes (after a BOM): so
//! the raw title never reaches the raw-title cap and nothing waits long for the full parser.
//! Anything else ends the fast path: the full parser decides.
//!
//! **The text.** The title's bytes, decoded on their own: the decoder is in its initial state
//! after the start tag's `>` and a sequence cut short by the end tag's `<` gives the same
//! U+FFFD as one cut short by the end of the input. The caller then applies the same
//! reference decoding and whitespace rules as for lol_html's text.

use std::ops::Range;

use encoding_rs::{Encoding, UTF_8};

use super::is_ascii_ws_byte;

/// Bytes of a document (after its byte-order mark) within which the title must end for the
/// fast path to read it; beyond them the full parser takes over.
pub(super) const MAX_FAST_BYTES: usize = 16 * 1024;
/// Start tags before the title the fast path reads; with more, the full parser decides.
pub(super) const MAX_START_TAGS: usize = 1024;
/// Start tag names (ASCII case-insensitive) that change how lol_html reads what follows, or
/// that the extractor's handlers track: text kinds (RCDATA, RAWTEXT, script data, PLAINTEXT),
/// foreign content, templates. A document with one before its title goes to the full parser.
const SPECIAL_START_TAGS: [&[u8]; 12] = [
    b"textarea",
    b"plaintext",
    b"script",
    b"style",
    b"iframe",
    b"xmp",
    b"noembed",
    b"noframes",
    b"noscript",
    b"svg",
    b"math",
    b"template",
];
/// The start of the title's start tag and of its end tag, compared ASCII case-insensitively.
const TITLE_OPEN: &[u8] = b"<title";
const TITLE_CLOSE: &[u8] = b"</title";
const TITLE: &[u8] = b"title";
const COMMENT_OPEN: &[u8] = b"<!--";

/// True when the fast path can read documents in `encoding`.
pub(super) fn applies_to(encoding: &'static Encoding) -> bool {
    encoding == UTF_8 || encoding.is_single_byte()
}

/// False when `doc` holds no `<title` (ASCII case-insensitive) at all. In an ASCII-compatible
/// encoding, ASCII characters in the decoded text come only from the same ASCII bytes, so a
/// whole document without these bytes has no title element whatever a parser makes of it.
pub(super) fn may_have_title(doc: &[u8]) -> bool {
    holds_tag_start(doc, TITLE_OPEN)
}

/// Whether `doc` holds `open` (a `<` and a tag name's first letters, matched ASCII
/// case-insensitively) anywhere: it goes from `<` to `<`.
pub(super) fn holds_tag_start(doc: &[u8], open: &[u8]) -> bool {
    let mut from = 0;
    while let Some(at) = find_lt(doc, from) {
        if starts_with_ignore_case(&doc[at..], open) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// What the scanner knows about a document so far.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// The first title element's text: these bytes of the document.
    Title(Range<usize>),
    /// Everything so far is in the subset; the next bytes decide.
    More,
    /// Outside the subset: only the full parser can tell.
    Unsupported,
}

/// Reads a growing document (the same bytes each time, and more), resuming where it stopped.
#[derive(Debug, Default)]
pub(super) struct Scanner {
    /// Where the next call resumes: a token boundary in the data state before the title,
    /// then the first `<` of the title's text not yet known to be text.
    pos: usize,
    /// Where the title's text starts, once its start tag is read.
    title_text: Option<usize>,
    start_tags: usize,
}

impl Scanner {
    /// Scans `doc`, the document from its first byte after any byte-order mark.
    pub(super) fn scan(&mut self, doc: &[u8]) -> Scan {
        let window = &doc[..doc.len().min(MAX_FAST_BYTES)];
        match self.scan_window(window) {
            Scan::More if doc.len() >= MAX_FAST_BYTES => Scan::Unsupported,
            found => found,
        }
    }

    fn scan_window(&mut self, doc: &[u8]) -> Scan {
        loop {
            if let Some(text) = self.title_text {
                return self.title_end(doc, text);
            }
            let Some(at) = find_lt(doc, self.pos) else {
                self.pos = doc.len();
                return Scan::More;
            };
            self.pos = at;
            match self.token(doc, at) {
                Token::Incomplete => return Scan::More,
                Token::Unsupported => return Scan::Unsupported,
                Token::Next(next) => self.pos = next,
                Token::TitleStart(text) => {
                    self.pos = text;
                    self.title_text = Some(text);
                }
            }
        }
    }

    /// The token starting with the `<` at `at`, in the data state.
    fn token(&mut self, doc: &[u8], at: usize) -> Token {
        let Some(&next) = doc.get(at + 1) else {
            return Token::Incomplete;
        };
        match next {
            b'!' => {
                let rest = &doc[at..];
                if rest.starts_with(COMMENT_OPEN) {
                    comment(doc, at + COMMENT_OPEN.len())
                } else if COMMENT_OPEN.starts_with(rest) {
                    Token::Incomplete
                } else {
                    // Doctype, CDATA outside foreign content, bogus comment.
                    through_gt(doc, at + 2)
                }
            }
            b'?' => through_gt(doc, at + 2),
            b'/' => match doc.get(at + 2) {
                None => Token::Incomplete,
                Some(b'>') => Token::Next(at + 3),
                Some(c) if c.is_ascii_alphabetic() => match tag(doc, at + 2) {
                    Some(end_tag) => Token::Next(end_tag.end),
                    None => Token::Incomplete,
                },
                Some(_) => through_gt(doc, at + 2),
            },
            c if c.is_ascii_alphabetic() => {
                let Some(start_tag) = tag(doc, at + 1) else {
                    return Token::Incomplete;
                };
                let name = &doc[at + 1..start_tag.name_end];
                if name.eq_ignore_ascii_case(TITLE) {
                    if start_tag.self_closing || start_tag.bare_equals {
                        Token::Unsupported
                    } else {
                        Token::TitleStart(start_tag.end)
                    }
                } else if SPECIAL_START_TAGS
                    .iter()
                    .any(|special| name.eq_ignore_ascii_case(special))
                {
                    Token::Unsupported
                } else {
                    self.start_tags += 1;
                    if self.start_tags > MAX_START_TAGS {
                        Token::Unsupported
                    } else {
                        Token::Next(start_tag.end)
                    }
                }
            }
            // A `<` that starts no tag is text.
            _ => Token::Next(at + 1),
        }
    }

    /// In the title's text (RCDATA, from `text`): its end tag, from `self.pos` on.
    fn title_end(&mut self, doc: &[u8], text: usize) -> Scan {
        while let Some(at) = find_lt(doc, self.pos) {
            self.pos = at;
            let rest = &doc[at..];
            let known = rest.len().min(TITLE_CLOSE.len());
            if !rest[..known].eq_ignore_ascii_case(&TITLE_CLOSE[..known]) {
                self.pos = at + 1;
                continue;
            }
            if known < TITLE_CLOSE.len() {
                return Scan::More;
            }
            let mut i = at + TITLE_CLOSE.len();
            match doc.get(i) {
                None => return Scan::More,
                Some(b'>') => return Scan::Title(text..at),
                Some(&b) if is_ascii_ws_byte(b) => loop {
                    i += 1;
                    match doc.get(i) {
                        None => return Scan::More,
                        Some(b'>') => return Scan::Title(text..at),
                        Some(&b) if is_ascii_ws_byte(b) => {}
                        // Attributes on the end tag: left to the full parser.
                        Some(_) => return Scan::Unsupported,
                    }
                },
                // `</title/`: left to the full parser.
                Some(b'/') => return Scan::Unsupported,
                // A longer name (`</titles>`) or no name: text.
                Some(_) => self.pos = at + 1,
            }
        }
        self.pos = doc.len();
        Scan::More
    }
}

/// One step of the scan before the title.
enum Token {
    /// The token runs past the bytes known so far.
    Incomplete,
    Unsupported,
    /// The next token starts here (in the data state).
    Next(usize),
    /// The title's start tag; its text starts here.
    TitleStart(usize),
}

/// A tag read with the tokenizer's tag and attribute states.
struct Tag {
    /// End of the tag name (it starts just after `<` or `</`).
    name_end: usize,
    /// Just after its `>`.
    end: usize,
    /// Ended by `/>`.
    self_closing: bool,
    /// Ended by `>` right after an attribute's `=` (ASCII whitespace between them allowed).
    bare_equals: bool,
}

/// The tag whose name starts at `name_start` (just after `<` or `</`), or `None` when it runs
/// past the end of `doc`. Follows the tokenizer's states (the HTML standard's, as lol_html
/// implements them), each run of bytes that keeps the state passed over at once.
fn tag(doc: &[u8], name_start: usize) -> Option<Tag> {
    let ends_name = |b: u8| is_ascii_ws_byte(b) || b == b'/' || b == b'>';
    let done = |name_end, gt: usize, self_closing, bare_equals| {
        Some(Tag {
            name_end,
            end: gt + 1,
            self_closing,
            bare_equals,
        })
    };
    // Tag name state: up to whitespace (before attribute name), `/` (self-closing start
    // tag) or `>` (emit), all three handled as in the before attribute name state.
    let name_end = name_start + doc[name_start..].iter().position(|&b| ends_name(b))?;
    let mut i = name_end;
    loop {
        // Before attribute name state.
        match *doc.get(i)? {
            b if is_ascii_ws_byte(b) => i += 1,
            // Self-closing start tag state: `>` emits, anything else is read again in the
            // before attribute name state.
            b'/' => match *doc.get(i + 1)? {
                b'>' => return done(name_end, i + 1, true, false),
                _ => i += 1,
            },
            b'>' => return done(name_end, i, false, false),
            // Attribute name state: its first character is anything (`=` included), then up
            // to whitespace (after attribute name), `=` (before attribute value), `/` or `>`
            // (as in the before attribute name state).
            _ => {
                i += 1;
                i += doc[i..].iter().position(|&b| ends_name(b) || b == b'=')?;
                // After attribute name state: whitespace passed over; `/` and `>` as in the
                // before attribute name state; anything but `=` starts the next attribute.
                i += doc[i..].iter().position(|&b| !is_ascii_ws_byte(b))?;
                if doc[i] != b'=' {
                    continue;
                }
                // Before attribute value state.
                i += 1;
                i += doc[i..].iter().position(|&b| !is_ascii_ws_byte(b))?;
                match doc[i] {
                    // Quoted value: up to the same quote, then the before attribute name
                    // state (lol_html goes there directly; the standard's after attribute
                    // value state differs only in parse errors).
                    quote @ (b'"' | b'\'') => {
                        i += 1;
                        i += doc[i..].iter().position(|&b| b == quote)? + 1;
                    }
                    b'>' => return done(name_end, i, false, true),
                    // Unquoted value: up to whitespace or `>`, both handled by the before
                    // attribute name state.
                    _ => {
                        i += doc[i..]
                            .iter()
                            .position(|&b| is_ascii_ws_byte(b) || b == b'>')?
                    }
                }
            }
        }
    }
}

/// A comment whose text starts at `text` (just after `<!--`): where it ends, as the
/// tokenizer's comment states end it.
fn comment(doc: &[u8], text: usize) -> Token {
    let rest = &doc[text..];
    if rest.starts_with(b">") {
        return Token::Next(text + 1);
    }
    if rest.starts_with(b"->") {
        return Token::Next(text + 2);
    }
    // The first `--` followed by `>` or `!>` ends it, whatever came before.
    let mut i = 0;
    while let Some(dash) = rest[i..].windows(2).position(|w| w == b"--") {
        let dashes = i + dash;
        match (rest.get(dashes + 2), rest.get(dashes + 3)) {
            (None, _) | (Some(b'!'), None) => return Token::Incomplete,
            (Some(b'>'), _) => return Token::Next(text + dashes + 3),
            (Some(b'!'), Some(b'>')) => return Token::Next(text + dashes + 4),
            _ => i = dashes + 1,
        }
    }
    Token::Incomplete
}

/// A token that ends at the first `>` from `from` on (doctype, bogus comment).
fn through_gt(doc: &[u8], from: usize) -> Token {
    match doc[from.min(doc.len())..].iter().position(|&b| b == b'>') {
        Some(gt) => Token::Next(from + gt + 1),
        None => Token::Incomplete,
    }
}

/// The first `<` in `doc` at or after `from`.
fn find_lt(doc: &[u8], from: usize) -> Option<usize> {
    doc.get(from..)?
        .iter()
        .position(|&b| b == b'<')
        .map(|at| from + at)
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::super::Extractor;
    use super::*;

    /// The scan of `doc` given whole, checked against the scans of all its prefixes: each
    /// says `More` (or already the same answer) and none contradicts the whole. The two
    /// extractors agree on it too.
    fn scan(doc: &[u8]) -> Scan {
        let extract = |mut ex: Extractor| {
            ex.feed(doc);
            ex.finish()
        };
        let utf8 = Some("text/html; charset=utf-8");
        assert_eq!(
            extract(Extractor::new(utf8, None)),
            extract(Extractor::without_fast_path(utf8, None))
        );
        let whole = Scanner::default().scan(doc);
        let mut growing = Scanner::default();
        for end in 0..=doc.len() {
            let step = growing.scan(&doc[..end]);
            if step != Scan::More {
                assert_eq!(
                    step,
                    whole,
                    "prefix {:?}",
                    String::from_utf8_lossy(&doc[..end])
                );
                break;
            }
        }
        whole
    }

    /// The title text the scan finds, if any.
    fn title(doc: &str) -> Option<&str> {
        match scan(doc.as_bytes()) {
            Scan::Title(text) => Some(&doc[text]),
            Scan::More | Scan::Unsupported => None,
        }
    }

    #[test]
    fn plain_documents() {
        let nginx = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>";
        assert_eq!(title(nginx), Some("404 Not Found"));
        let page = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                    <meta name=viewport content=\"width=device-width\"/>\
                    <link rel=stylesheet href=/a.css><TITLE lang=en>Hi &amp; bye</TiTle >";
        assert_eq!(title(page), Some("Hi &amp; bye"));
        assert_eq!(title("<title></title>"), Some(""));
        assert_eq!(title("<p>late</p><title>t</title>"), Some("t"));
    }

    #[test]
    fn rcdata_runs_to_the_first_title_end_tag() {
        assert_eq!(
            title("<title>a <b>b</b> </titlex> c</title>"),
            Some("a <b>b</b> </titlex> c")
        );
        assert_eq!(title("<title>a</title1></title>"), Some("a</title1>"));
        assert_eq!(title("<title>a</title\n\t>"), Some("a"));
        assert_eq!(scan(b"<title>a</title x>"), Scan::Unsupported);
        assert_eq!(scan(b"<title>a</title/>"), Scan::Unsupported);
        assert_eq!(scan(b"<title>unclosed"), Scan::More);
        assert_eq!(scan(b"<title>a</tit"), Scan::More);
    }

    #[test]
    fn tags_are_read_like_the_tokenizer() {
        assert_eq!(
            title("<meta content='<title>no</title>'><title>yes</title>"),
            Some("yes")
        );
        assert_eq!(
            title("<a b=\"c>d\" e='f>g' h=i>j><title>t</title>"),
            Some("t")
        );
        // An unquoted value and an attribute name keep their quotes: `>` ends the tag.
        assert_eq!(title("<a b=c\"d>x\"<title>t</title>"), Some("t"));
        assert_eq!(title("<a \"b><title>t</title>"), Some("t"));
        assert_eq!(
            title("<a \"b='>'<title>no</title>"),
            None,
            "`<title` is a name here"
        );
        assert_eq!(title("<a / b / ><br/><title>t</title>"), Some("t"));
        assert_eq!(title("<a =b><title>t</title>"), Some("t"));
        assert_eq!(title("</div x='>'></><title>t</title>"), Some("t"));
        assert_eq!(title("<title data-x='a>b' >t</title>"), Some("t"));
        assert_eq!(scan(b"<a b=\"c"), Scan::More);
        assert_eq!(scan(b"<a b"), Scan::More);
    }

    #[test]
    fn comments_and_doctypes_end_where_the_tokenizer_ends_them() {
        for comment in [
            "<!---->",
            "<!-->",
            "<!--->",
            "<!-- a --!>",
            "<!-- a --->",
            "<!-- -- -- -->",
            "<!--<!-- nested -->",
            "<!-- <title>no</title> -->",
        ] {
            assert_eq!(
                title(&format!("{comment}<title>t</title>")),
                Some("t"),
                "{comment}"
            );
        }
        assert_eq!(scan(b"<!-- a -- >"), Scan::More, "not ended");
        assert_eq!(scan(b"<!-- a --!"), Scan::More);
        assert_eq!(
            title("<!DOCTYPE html SYSTEM \"<title>no</title>\"><title>t</title>"),
            Some("t")
        );
        assert_eq!(
            title("<?xml?><!x></ x><![CDATA[>]]><title>t</title>"),
            Some("t")
        );
        assert_eq!(title("a < b <3 <\u{e9}<title>t</title>"), Some("t"));
    }

    #[test]
    fn outside_the_subset() {
        for special in SPECIAL_START_TAGS {
            let special = String::from_utf8_lossy(special).to_uppercase();
            let doc = format!("<{special} x=y><title>t</title>");
            assert_eq!(scan(doc.as_bytes()), Scan::Unsupported, "{special}");
        }
        for start in ["<title/>", "<title a=>", "<title a = >", "<title a/>"] {
            let doc = format!("{start}t</title>");
            assert_eq!(scan(doc.as_bytes()), Scan::Unsupported, "{start}");
        }
        // Names that only look like special ones are plain tags.
        assert_eq!(
            title("<scripts><svg-icon><titles><title>t</title>"),
            Some("t")
        );
    }

    #[test]
    fn limits() {
        let tags = "<p>".repeat(MAX_START_TAGS);
        assert_eq!(title(&format!("{tags}<title>t</title>")), Some("t"));
        let doc = format!("{tags}<p><title>t</title>");
        assert_eq!(Scanner::default().scan(doc.as_bytes()), Scan::Unsupported);

        let room = MAX_FAST_BYTES - "<title>".len() - "</title>".len();
        let fits = format!("<title>{}</title>", "x".repeat(room));
        assert!(matches!(
            Scanner::default().scan(fits.as_bytes()),
            Scan::Title(_)
        ));
        let long = format!("<title>{}</title>", "x".repeat(room + 1));
        assert_eq!(Scanner::default().scan(long.as_bytes()), Scan::Unsupported);
        let waiting = "x".repeat(MAX_FAST_BYTES);
        assert_eq!(
            Scanner::default().scan(waiting.as_bytes()),
            Scan::Unsupported
        );
    }

    #[test]
    fn title_bytes_anywhere() {
        assert!(may_have_title(b"<script>'<TITLE'</script>"));
        assert!(!may_have_title(b"<titl e><p>title</p>< title>"));
        assert!(!may_have_title(b""));
    }

    #[test]
    fn encodings() {
        assert!(applies_to(UTF_8));
        assert!(applies_to(encoding_rs::WINDOWS_1252));
        assert!(applies_to(encoding_rs::X_USER_DEFINED));
        assert!(!applies_to(encoding_rs::SHIFT_JIS));
        assert!(!applies_to(encoding_rs::UTF_16LE));
    }
}
