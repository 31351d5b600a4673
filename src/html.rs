//! Sans-IO title and link extraction (lol_html) with charset detection (encoding_rs).
//!
//! Title semantics follow ARCHITECTURE.md: charset from the Content-Type header, else BOM,
//! else `<meta charset>`/`http-equiv` prescan of the first 1024 bytes, else windows-1252;
//! the first `title` element outside svg/script/style/template/comments; entities decoded;
//! ASCII whitespace stripped and collapsed; `""` vs `None` distinct; capped at
//! [`MAX_TITLE_BYTES`].

use crate::error::ErrorKind;

/// Longest title kept, in bytes of UTF-8 (cut on a char boundary; `title_truncated` set).
pub const MAX_TITLE_BYTES: usize = 4096;
/// How many leading bytes the meta prescan looks at.
pub const PRESCAN_BYTES: usize = 1024;

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
    _private: (),
}

impl FollowSelector {
    pub fn parse(css: &str) -> Result<Self, HtmlError> {
        let _ = css;
        todo!("html helper")
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
pub fn is_html(content_type: Option<&str>) -> bool {
    let _ = content_type;
    todo!("html helper")
}

/// The charset parameter of a Content-Type value, if encoding_rs knows it.
pub fn charset_from_content_type(content_type: &str) -> Option<&'static encoding_rs::Encoding> {
    let _ = content_type;
    todo!("html helper")
}

/// Streaming extractor for one document. Feed decoded body bytes as they arrive.
pub struct Extractor {
    _private: (),
}

impl Extractor {
    /// `content_type`: the response's Content-Type header value, if any.
    /// `follow`: hop 1 of a two-hop crawl: look for the first link matching this selector
    /// (the title is still extracted if seen, but is not waited for).
    pub fn new(content_type: Option<&str>, follow: Option<&FollowSelector>) -> Self {
        let _ = (content_type, follow);
        todo!("html helper")
    }

    /// Feed the next body chunk. Returns `true` once everything wanted is known (without
    /// `follow`: the title is complete; with `follow`: the link is found): the caller stops
    /// reading the body.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let _ = chunk;
        todo!("html helper")
    }

    /// End of body (or reading stopped): the result.
    pub fn finish(self) -> Extracted {
        todo!("html helper")
    }
}
