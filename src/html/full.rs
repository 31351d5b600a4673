//! The full parser: lol_html's streaming tokenizer over the document transcoded to UTF-8, with
//! the handlers that find the title (outside `<template>` and SVG), `<base href>` and the
//! `--follow` link. Every document the fast path (`fast.rs`) cannot read exactly comes here.
//!
//! The handlers share their findings through one [`State`] behind a mutex: lol_html's `Send`
//! handler types ask for `Send` closures, and the extractor must be `Send` to move between
//! tasks. Nothing else touches the state, so the lock is never contended.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use encoding_rs::{CoderResult, Decoder, Encoding};
use lol_html::html_content::{EndTag, TextChunk};
use lol_html::send::{Element, SendHandlerTypes};
use lol_html::{
    AsciiCompatibleEncoding, ElementContentHandlers, HandlerResult, HtmlRewriter, MemorySettings,
    OutputSink, Selector, Settings,
};

use super::MAX_RAW_TITLE_BYTES;
use super::{clean_href, finish_title, floor_char_boundary, is_followable, Extracted};

/// Memory lol_html may use for one document (partial tags held across chunks).
pub(super) const MAX_PARSER_MEMORY: usize = 4 * 1024 * 1024;
/// Most UTF-8 the transcoder writes before lol_html reads it (the buffer is sized to the
/// input below that, so a small page does not pay for a large buffer). Small enough that a
/// large read whose start holds the title is not transcoded past it: lol_html stops between
/// two pieces.
const DECODE_BUFFER_BYTES: usize = 4 * 1024;
/// Least room the transcoder is given.
const MIN_DECODE_BUFFER_BYTES: usize = 256;
/// The HTML namespace as lol_html reports it.
const HTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// Where the title element stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum TitleState {
    #[default]
    NotSeen,
    Capturing,
    Done,
}

/// What the lol_html handlers record; shared between them and the [`FullParser`].
#[derive(Debug, Default)]
struct State {
    follow: bool,
    template_depth: usize,
    /// Set by the `svg title` handler just before the `title` handler runs for the same
    /// element: lol_html reports an SVG `<title>` (an HTML integration point) as HTML.
    foreign_title: bool,
    title: TitleState,
    raw_title: String,
    raw_title_truncated: bool,
    link: Option<String>,
    base_href: Option<String>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Returned from a handler to make lol_html stop at once: everything wanted is known.
#[derive(Debug, thiserror::Error)]
#[error("extraction complete")]
struct Complete;

fn complete() -> HandlerResult {
    Err(Box::new(Complete))
}

/// lol_html's output (the unchanged document) is not needed.
struct Discard;

impl OutputSink for Discard {
    fn handle_chunk(&mut self, _chunk: &[u8]) {}
}

type Rewriter = HtmlRewriter<'static, Discard, SendHandlerTypes>;
type Handlers = (
    Cow<'static, Selector>,
    ElementContentHandlers<'static, SendHandlerTypes>,
);

/// The built-in selectors, parsed once per process (parsing them for every page showed up
/// in perf profiles of the broad bench).
static TEMPLATE: LazyLock<Selector> = LazyLock::new(|| builtin("template"));
static SVG_TITLE: LazyLock<Selector> = LazyLock::new(|| builtin("svg title"));
static TITLE: LazyLock<Selector> = LazyLock::new(|| builtin("title"));
static BASE_HREF: LazyLock<Selector> = LazyLock::new(|| builtin("base[href]"));

fn builtin(css: &str) -> Selector {
    css.parse().expect("built-in selector is valid")
}

fn selector(parsed: &'static LazyLock<Selector>) -> Cow<'static, Selector> {
    Cow::Borrowed(LazyLock::force(parsed))
}

fn template_handler(state: &Shared) -> Handlers {
    let state = Arc::clone(state);
    let handler = move |el: &mut Element<'_, '_>| {
        if el.namespace_uri() != HTML_NAMESPACE {
            return Ok(());
        }
        let on_end = Arc::clone(&state);
        let registered = el.on_end_tag(Box::new(move |_: &mut EndTag<'_>| {
            let mut s = lock(&on_end);
            s.template_depth = s.template_depth.saturating_sub(1);
            Ok(())
        }));
        if registered.is_ok() {
            lock(&state).template_depth += 1;
        }
        Ok(())
    };
    (
        selector(&TEMPLATE),
        ElementContentHandlers::default().element(handler),
    )
}

/// Marks the next `title` element as SVG's. Registered before [`title_handlers`]: lol_html
/// runs the handlers matching one element in registration order.
fn svg_title_handler(state: &Shared) -> Handlers {
    let state = Arc::clone(state);
    let handler = move |_: &mut Element<'_, '_>| {
        lock(&state).foreign_title = true;
        Ok(())
    };
    (
        selector(&SVG_TITLE),
        ElementContentHandlers::default().element(handler),
    )
}

fn title_handlers(state: &Shared) -> Handlers {
    let on_element = Arc::clone(state);
    let on_text = Arc::clone(state);
    let element = move |el: &mut Element<'_, '_>| {
        {
            let mut s = lock(&on_element);
            let foreign = std::mem::take(&mut s.foreign_title);
            if foreign
                || s.title != TitleState::NotSeen
                || s.template_depth > 0
                || el.namespace_uri() != HTML_NAMESPACE
            {
                return Ok(());
            }
            s.title = TitleState::Capturing;
        }
        let on_end = Arc::clone(&on_element);
        let registered = el.on_end_tag(Box::new(move |_: &mut EndTag<'_>| {
            let mut s = lock(&on_end);
            s.title = TitleState::Done;
            if s.follow {
                Ok(())
            } else {
                complete()
            }
        }));
        if registered.is_err() {
            // An element without content (never the case for an HTML title, which is
            // RCDATA until `</title>`): an empty title, complete now.
            let mut s = lock(&on_element);
            s.title = TitleState::Done;
            if !s.follow {
                return complete();
            }
        }
        Ok(())
    };
    let text = move |chunk: &mut TextChunk<'_>| {
        let mut s = lock(&on_text);
        if s.title != TitleState::Capturing {
            return Ok(());
        }
        let text = chunk.as_str();
        let room = MAX_RAW_TITLE_BYTES - s.raw_title.len();
        if text.len() <= room {
            s.raw_title.push_str(text);
            return Ok(());
        }
        let cut = floor_char_boundary(text, room);
        s.raw_title.push_str(&text[..cut]);
        s.raw_title_truncated = true;
        s.title = TitleState::Done;
        if s.follow {
            Ok(())
        } else {
            complete()
        }
    };
    (
        selector(&TITLE),
        ElementContentHandlers::default()
            .element(element)
            .text(text),
    )
}

fn base_handler(state: &Shared) -> Handlers {
    let state = Arc::clone(state);
    let handler = move |el: &mut Element<'_, '_>| {
        let mut s = lock(&state);
        if s.base_href.is_some() || s.template_depth > 0 || el.namespace_uri() != HTML_NAMESPACE {
            return Ok(());
        }
        if let Some(href) = el.get_attribute("href") {
            s.base_href = Some(clean_href(&href).into_owned());
        }
        Ok(())
    };
    (
        selector(&BASE_HREF),
        ElementContentHandlers::default().element(handler),
    )
}

fn link_handler(state: &Shared, follow: Selector) -> Handlers {
    let state = Arc::clone(state);
    let handler = move |el: &mut Element<'_, '_>| {
        let mut s = lock(&state);
        if s.link.is_some() || s.template_depth > 0 {
            return Ok(());
        }
        let Some(href) = el.get_attribute("href") else {
            return Ok(());
        };
        let href = clean_href(&href);
        if !is_followable(&href) {
            return Ok(());
        }
        s.link = Some(href.into_owned());
        complete()
    };
    (
        Cow::Owned(follow),
        ElementContentHandlers::default().element(handler),
    )
}

/// lol_html over one document whose encoding is decided.
pub(super) struct FullParser {
    state: Shared,
    /// `None` once lol_html stopped (everything found, or it gave up).
    rewriter: Option<Rewriter>,
    decoder: Decoder,
    /// The transcoder's output, handed to lol_html and cleared.
    utf8: String,
}

impl FullParser {
    /// A parser for a document in `encoding` (its byte-order mark already skipped).
    /// `follow`: hop 1 of a two-hop crawl: also look for the first link matching it.
    pub(super) fn new(encoding: &'static Encoding, follow: Option<Selector>) -> Self {
        let state: Shared = Arc::new(Mutex::new(State {
            follow: follow.is_some(),
            ..State::default()
        }));
        let mut handlers = vec![
            template_handler(&state),
            svg_title_handler(&state),
            title_handlers(&state),
        ];
        if let Some(follow) = follow {
            handlers.push(base_handler(&state));
            handlers.push(link_handler(&state, follow));
        }
        let settings = Settings {
            element_content_handlers: handlers,
            encoding: AsciiCompatibleEncoding::utf_8(),
            memory_settings: MemorySettings {
                max_allowed_memory_usage: MAX_PARSER_MEMORY,
                ..MemorySettings::default()
            },
            strict: false,
            adjust_charset_on_meta_tag: false,
            ..Settings::new_send()
        };
        Self {
            rewriter: Some(HtmlRewriter::new(settings, Discard)),
            state,
            decoder: encoding.new_decoder_without_bom_handling(),
            utf8: String::new(),
        }
    }

    /// Parses the next bytes of the document. Returns `true` once lol_html stopped:
    /// everything wanted is known, or it gave up at its memory limit.
    pub(super) fn write(&mut self, input: &[u8]) -> bool {
        self.transcode(input, false);
        self.rewriter.is_none()
    }

    /// End of the document: what was found.
    pub(super) fn finish(mut self) -> Extracted {
        if self.rewriter.is_some() {
            self.transcode(&[], true);
            if let Some(rewriter) = self.rewriter.take() {
                // An error here only means lol_html gave up; what was found stands.
                let _ = rewriter.end();
            }
        }
        let mut s = lock(&self.state);
        let (title, truncated) = match s.title {
            TitleState::NotSeen => (None, false),
            TitleState::Capturing | TitleState::Done => {
                let (title, truncated) = finish_title(&s.raw_title);
                (Some(title), truncated || s.raw_title_truncated)
            }
        };
        Extracted {
            title,
            title_truncated: truncated,
            link: s.link.take(),
            base_href: s.base_href.take(),
        }
    }

    /// Transcodes `input` to UTF-8 and feeds lol_html, dropping it on any error (which is
    /// how a handler says "complete").
    fn transcode(&mut self, mut input: &[u8], last: bool) {
        let Some(rewriter) = self.rewriter.as_mut() else {
            return;
        };
        let room = self
            .decoder
            .max_utf8_buffer_length(input.len())
            .unwrap_or(DECODE_BUFFER_BYTES)
            .clamp(MIN_DECODE_BUFFER_BYTES, DECODE_BUFFER_BYTES);
        if self.utf8.capacity() < room {
            self.utf8 = String::with_capacity(room);
        }
        loop {
            self.utf8.clear();
            let (result, read, _) = self.decoder.decode_to_string(input, &mut self.utf8, last);
            input = &input[read..];
            if !self.utf8.is_empty() && rewriter.write(self.utf8.as_bytes()).is_err() {
                self.rewriter = None;
                // Handlers stop lol_html only once the title is complete; still capturing
                // means lol_html gave up (its memory limit) inside the title.
                let mut s = lock(&self.state);
                if s.title == TitleState::Capturing {
                    s.raw_title_truncated = true;
                    s.title = TitleState::Done;
                }
                return;
            }
            if result == CoderResult::InputEmpty {
                return;
            }
        }
    }
}
