//! HTML page variants with their exact expected titles per ARCHITECTURE.md "Title semantics":
//! every charset source (header, BOM, meta, http-equiv, windows-1252 default) and every trap
//! (title in a script string, comment, svg, style/template; upper-case tags; entities;
//! whitespace; empty vs missing; markup inside the title; an over-long title).
//!
//! Used by both the site generator (served by nginx) and the fault server (`/charset/*`).

use encoding_rs::{Encoding, SHIFT_JIS, WINDOWS_1252};

/// Title cap from the contract (bytes of UTF-8, cut on a char boundary).
pub const MAX_TITLE_BYTES: usize = 4096;

/// How the page's Content-Type header is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// `text/html` without a charset.
    Html,
    /// `text/html; charset=utf-8`.
    HtmlUtf8,
    /// `text/html; charset=iso-8859-1`.
    HtmlLatin1,
    /// `image/png`: not HTML, never parsed.
    Png,
}

impl ContentType {
    pub fn header_value(self) -> &'static str {
        match self {
            ContentType::Html => "text/html",
            ContentType::HtmlUtf8 => "text/html; charset=utf-8",
            ContentType::HtmlLatin1 => "text/html; charset=iso-8859-1",
            ContentType::Png => "image/png",
        }
    }

    /// File extension nginx maps to this type (see the `types` block in `nginx.rs`).
    pub fn extension(self) -> &'static str {
        match self {
            ContentType::Html => "html",
            ContentType::HtmlUtf8 => "hu8",
            ContentType::HtmlLatin1 => "hl1",
            ContentType::Png => "png",
        }
    }
}

/// One kind of page. `ALL` lists them in a stable order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    Utf8Header,
    MetaWindows1252,
    MetaLatin1,
    MetaShiftJis,
    Utf8Bom,
    HttpEquiv,
    NoDeclaration,
    HeaderBeatsMeta,
    ScriptTrap,
    CommentTrap,
    SvgTrap,
    StyleTemplateTrap,
    UpperCase,
    Entities,
    Whitespace,
    Empty,
    Blank,
    Missing,
    Attributes,
    MarkupInside,
    LateTitle,
    Long,
    NotHtml,
}

impl PageKind {
    pub const ALL: [PageKind; 23] = [
        PageKind::Utf8Header,
        PageKind::MetaWindows1252,
        PageKind::MetaLatin1,
        PageKind::MetaShiftJis,
        PageKind::Utf8Bom,
        PageKind::HttpEquiv,
        PageKind::NoDeclaration,
        PageKind::HeaderBeatsMeta,
        PageKind::ScriptTrap,
        PageKind::CommentTrap,
        PageKind::SvgTrap,
        PageKind::StyleTemplateTrap,
        PageKind::UpperCase,
        PageKind::Entities,
        PageKind::Whitespace,
        PageKind::Empty,
        PageKind::Blank,
        PageKind::Missing,
        PageKind::Attributes,
        PageKind::MarkupInside,
        PageKind::LateTitle,
        PageKind::Long,
        PageKind::NotHtml,
    ];

    /// Short stable name (used in fault-server paths `/charset/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            PageKind::Utf8Header => "utf8-header",
            PageKind::MetaWindows1252 => "meta-windows-1252",
            PageKind::MetaLatin1 => "meta-iso-8859-1",
            PageKind::MetaShiftJis => "meta-shift_jis",
            PageKind::Utf8Bom => "utf8-bom",
            PageKind::HttpEquiv => "http-equiv",
            PageKind::NoDeclaration => "none-windows-1252",
            PageKind::HeaderBeatsMeta => "header-beats-meta",
            PageKind::ScriptTrap => "script-trap",
            PageKind::CommentTrap => "comment-trap",
            PageKind::SvgTrap => "svg-trap",
            PageKind::StyleTemplateTrap => "style-template-trap",
            PageKind::UpperCase => "upper-case",
            PageKind::Entities => "entities",
            PageKind::Whitespace => "whitespace",
            PageKind::Empty => "empty",
            PageKind::Blank => "blank",
            PageKind::Missing => "missing",
            PageKind::Attributes => "attributes",
            PageKind::MarkupInside => "markup-inside",
            PageKind::LateTitle => "late-title",
            PageKind::Long => "long",
            PageKind::NotHtml => "not-html",
        }
    }

    pub fn from_name(name: &str) -> Option<PageKind> {
        PageKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A rendered page and what a correct crawler must report for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub content_type: ContentType,
    pub body: Vec<u8>,
    /// Expected `title` (`None` = JSON null).
    pub title: Option<String>,
    /// Expected `title_truncated`.
    pub truncated: bool,
}

fn encode(enc: &'static Encoding, text: &str) -> Vec<u8> {
    let (bytes, used, unmappable) = enc.encode(text);
    assert!(
        !unmappable && used == enc,
        "{text:?} not representable in {}",
        enc.name()
    );
    bytes.into_owned()
}

/// A document around `head_extra` (raw markup in `<head>`) and `body` markup.
fn doc(head: &str, body: &str) -> String {
    format!("<!DOCTYPE html>\n<html>\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n")
}

const FILLER: &str = "<p>Some body text so the page is not empty.</p>";

/// A minimal valid PNG (1x1, transparent) for non-HTML responses.
pub const PNG_BYTES: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// Render `kind` with a `label` (ASCII, e.g. "h0001 p0003") woven into its title so every
/// URL's title is distinct.
pub fn render(kind: PageKind, label: &str) -> Page {
    let utf8 = |s: String| s.into_bytes();
    let some = |s: String| Some(s);
    let (content_type, body, title, truncated) = match kind {
        PageKind::Utf8Header => {
            let t = format!("Ünïcødé — {label}");
            (
                ContentType::HtmlUtf8,
                utf8(doc(&format!("<title>{t}</title>"), FILLER)),
                some(t),
                false,
            )
        }
        PageKind::MetaWindows1252 => {
            let t = format!("Café ‘{label}’ €5");
            let d = doc(
                &format!("<meta charset=\"windows-1252\">\n<title>{t}</title>"),
                FILLER,
            );
            (ContentType::Html, encode(WINDOWS_1252, &d), some(t), false)
        }
        PageKind::MetaLatin1 => {
            let t = format!("Naïve résumé {label}");
            let d = doc(
                &format!("<meta charset=iso-8859-1>\n<title>{t}</title>"),
                FILLER,
            );
            (ContentType::Html, encode(WINDOWS_1252, &d), some(t), false)
        }
        PageKind::MetaShiftJis => {
            let t = format!("日本語のタイトル {label}");
            let d = doc(
                &format!("<meta charset=\"Shift_JIS\">\n<title>{t}</title>"),
                FILLER,
            );
            (ContentType::Html, encode(SHIFT_JIS, &d), some(t), false)
        }
        PageKind::Utf8Bom => {
            let t = format!("BOM ✓ {label}");
            let mut b = vec![0xef, 0xbb, 0xbf];
            b.extend_from_slice(doc(&format!("<title>{t}</title>"), FILLER).as_bytes());
            (ContentType::Html, b, some(t), false)
        }
        PageKind::HttpEquiv => {
            let t = format!("Équivalent ☃ {label}");
            let head = format!(
                "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n<title>{t}</title>"
            );
            (ContentType::Html, utf8(doc(&head, FILLER)), some(t), false)
        }
        PageKind::NoDeclaration => {
            let t = format!("Señor Müller {label}");
            let d = doc(&format!("<title>{t}</title>"), FILLER);
            (ContentType::Html, encode(WINDOWS_1252, &d), some(t), false)
        }
        PageKind::HeaderBeatsMeta => {
            let t = format!("Ärger über {label}");
            let d = doc(
                &format!("<meta charset=\"utf-8\">\n<title>{t}</title>"),
                FILLER,
            );
            (
                ContentType::HtmlLatin1,
                encode(WINDOWS_1252, &d),
                some(t),
                false,
            )
        }
        PageKind::ScriptTrap => {
            let t = format!("Script trap {label}");
            let head = format!(
                "<script>var s = \"<title>wrong: script</title>\"; document.write('<title>no</title>');</script>\n<title>{t}</title>"
            );
            (ContentType::Html, utf8(doc(&head, FILLER)), some(t), false)
        }
        PageKind::CommentTrap => {
            let t = format!("Comment trap {label}");
            let head = format!("<!-- <title>wrong: comment</title> -->\n<title>{t}</title>");
            (ContentType::Html, utf8(doc(&head, FILLER)), some(t), false)
        }
        PageKind::SvgTrap => {
            let t = format!("After svg {label}");
            let body = format!(
                "<svg width=\"10\" height=\"10\"><title>wrong: svg</title><rect width=\"10\" height=\"10\"/></svg>\n<title>{t}</title>\n{FILLER}"
            );
            (
                ContentType::Html,
                utf8(doc("<meta name=\"x\" content=\"y\">", &body)),
                some(t),
                false,
            )
        }
        PageKind::StyleTemplateTrap => {
            let t = format!("Style template {label}");
            let head = format!(
                "<style>/* <title>wrong: style</title> */ p {{ color: red }}</style>\n<template><title>wrong: template</title></template>\n<title>{t}</title>"
            );
            (ContentType::Html, utf8(doc(&head, FILLER)), some(t), false)
        }
        PageKind::UpperCase => {
            let t = format!("Upper case {label}");
            let d = format!("<!DOCTYPE HTML>\n<HTML><HEAD><TITLE>{t}</TITLE></HEAD><BODY>{FILLER}</BODY></HTML>\n");
            (ContentType::Html, utf8(d), some(t), false)
        }
        PageKind::Entities => {
            let raw = format!(
                "Tom &amp; Jerry &lt;3&gt; &quot;q&quot; &#39;s&#39; &eacute;t&#233; &#x263A; A&nbsp;B {label}"
            );
            let t = format!("Tom & Jerry <3> \"q\" 's' été ☺ A\u{a0}B {label}");
            (
                ContentType::HtmlUtf8,
                utf8(doc(&format!("<title>{raw}</title>"), FILLER)),
                some(t),
                false,
            )
        }
        PageKind::Whitespace => {
            let raw = format!("\n\t  Lots \t of\r\n\x0c  space   {label} \n");
            let t = format!("Lots of space {label}");
            (
                ContentType::Html,
                utf8(doc(&format!("<title>{raw}</title>"), FILLER)),
                some(t),
                false,
            )
        }
        PageKind::Empty => (
            ContentType::Html,
            utf8(doc("<title></title>", FILLER)),
            some(String::new()),
            false,
        ),
        PageKind::Blank => (
            ContentType::Html,
            utf8(doc("<title> \n\t </title>", FILLER)),
            some(String::new()),
            false,
        ),
        PageKind::Missing => {
            let body = format!("<h1>No title here {label}</h1>{FILLER}");
            (
                ContentType::Html,
                utf8(doc("<meta name=\"robots\" content=\"none\">", &body)),
                None,
                false,
            )
        }
        PageKind::Attributes => {
            let t = format!("Attributes {label}");
            let head = format!("<title lang=\"en\" data-x='<b>' >{t}</title >");
            (ContentType::Html, utf8(doc(&head, FILLER)), some(t), false)
        }
        PageKind::MarkupInside => {
            // title is RCDATA: tags inside it are text.
            let t = format!("a <b>bold</b> {label}");
            (
                ContentType::Html,
                utf8(doc(&format!("<title>{t}</title>"), FILLER)),
                some(t),
                false,
            )
        }
        PageKind::LateTitle => {
            let t = format!("Late title {label}");
            let mut head = String::new();
            for i in 0..60 {
                head.push_str(&format!(
                    "<meta name=\"k{i}\" content=\"padding padding padding padding\">\n"
                ));
            }
            head.push_str(&format!("<title>{t}</title>"));
            (ContentType::Html, utf8(doc(&head, FILLER)), some(t), false)
        }
        PageKind::Long => {
            let full = format!("{label} {}", "€".repeat(2000));
            let mut cut = MAX_TITLE_BYTES;
            while !full.is_char_boundary(cut) {
                cut -= 1;
            }
            let t = full[..cut].to_string();
            (
                ContentType::HtmlUtf8,
                utf8(doc(&format!("<title>{full}</title>"), FILLER)),
                some(t),
                true,
            )
        }
        PageKind::NotHtml => (ContentType::Png, PNG_BYTES.to_vec(), None, false),
    };
    Page {
        content_type,
        body,
        title,
        truncated,
    }
}
