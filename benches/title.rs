//! Title extraction cost (`html::Extractor`), one page per iteration the way the fetch loop
//! runs it: `Extractor::new` with the response's Content-Type, `feed` per socket read (16 KiB)
//! until it says enough, `finish`.
//!
//! Shapes: the nginx 404 page (`text/html` without a charset, so the whole page waits for the
//! meta prescan), a realistic small-site page (`text/html`, `<meta charset>` first in a head
//! of metas and links), a small page without any title, and a ~100 KiB page with the title
//! early (reading stops at `</title>`) and late (the whole page goes through the tokenizer);
//! plus the `--follow` link search. The small shapes also run through the full parser alone
//! (`*_full_parser`, `Extractor::without_fast_path`): lol_html's fixed cost per page.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringcrawl::html::{Extractor, FollowSelector};

/// Size of the generated large page.
const PAGE_BYTES: usize = 100 * 1024;
/// Size of each `feed` call, like one socket read.
const READ_BYTES: usize = 16 * 1024;
/// nginx's Content-Type for `.html` files and its own error pages: no charset.
const NGINX_HTML: &str = "text/html";

/// nginx's built-in 404 page, byte for byte.
const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
                         <center><h1>404 Not Found</h1></center>\r\n\
                         <hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";

/// The head of a small site's page as static site generators and CMS themes write it.
const SMALL_SITE_HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n\
    <meta charset=\"utf-8\">\n\
    <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\">\n\
    <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
    <meta name=\"description\" content=\"Notes on gardening, bikes &amp; the odd recipe.\">\n\
    <meta property=\"og:title\" content=\"Spring planting \u{2014} Anna's notes\">\n\
    <meta property=\"og:type\" content=\"article\">\n\
    <link rel=\"icon\" href=\"/favicon.ico\" sizes=\"any\">\n\
    <link rel=\"stylesheet\" href=\"/assets/css/main.css?v=3\">\n\
    <link rel=\"alternate\" type=\"application/rss+xml\" title=\"Anna's notes\" href=\"/feed.xml\">\n\
    <link rel=\"canonical\" href=\"https://notes.example/2024/spring-planting/\">\n\
    <title>Spring planting \u{2014} Anna&#39;s notes</title>\n\
    <script defer src=\"/assets/js/site.js\"></script>\n</head>\n<body>\n\
    <header class=\"site-header\"><a class=\"brand\" href=\"/\">Anna's notes</a>\n\
    <nav><a href=\"/\">Home</a> <a href=\"/archive/\">Archive</a> <a href=\"/about/\">About</a></nav>\n\
    </header>\n<main>\n<article>\n<h1>Spring planting</h1>\n";
/// One paragraph of the small site's article.
const SMALL_SITE_PARAGRAPH: &str = "<p>The beds get a layer of compost in March, the peas go in \
    as soon as the soil can be worked, and the tomatoes wait indoors until the nights stay \
    above 10&nbsp;&deg;C. <a href=\"/2023/tomatoes/\">Last year's tomatoes</a> taught me \
    patience.</p>\n";
/// Paragraphs in the small site's article.
const SMALL_SITE_PARAGRAPHS: usize = 12;
const SMALL_SITE_TAIL: &str = "</article>\n</main>\n<footer>&copy; 2024 Anna</footer>\n\
    </body>\n</html>\n";

/// A realistic small-site page (about 5 KiB).
fn small_site() -> Vec<u8> {
    let mut out = String::from(SMALL_SITE_HEAD);
    for _ in 0..SMALL_SITE_PARAGRAPHS {
        out.push_str(SMALL_SITE_PARAGRAPH);
    }
    out.push_str(SMALL_SITE_TAIL);
    out.into_bytes()
}

/// A small page with no title element at all (an API's HTML error, a bare redirect page).
fn small_untitled() -> Vec<u8> {
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
     <script>window.location = '/login';</script></head>\n<body><h1>Moved</h1>\
     <p>Go to <a href=\"/login\">the login page</a>.</p></body></html>\n"
        .as_bytes()
        .to_vec()
}

/// A page of repeated article markup (scripts, comments, entities, links) with the title and
/// the followed link placed at the start or the end.
fn page(title_early: bool) -> Vec<u8> {
    let head = "<!doctype html><html><head><meta charset=\"utf-8\">\
                <script>var t = '<title>not this</title>';</script>";
    let title = "<title>  Benchmark &amp; page \u{2014} caf\u{e9}  </title>";
    let block = "<div class=\"post\"><p>Lorem ipsum dolor sit amet, &ldquo;consectetur&rdquo; \
                 adipiscing elit <a href=\"/tag/x\">tag</a>.</p><!-- comment --><ul>\
                 <li>one</li><li>two</li></ul></div>\n";
    let mut out = String::with_capacity(PAGE_BYTES + 1024);
    out.push_str(head);
    if title_early {
        out.push_str(title);
        out.push_str("</head><body>");
    } else {
        out.push_str("</head><body>");
    }
    while out.len() < PAGE_BYTES - 512 {
        out.push_str(block);
    }
    if !title_early {
        out.push_str(title);
    }
    out.push_str("<h3><a href=\"/posts/first\">First</a></h3></body></html>");
    out.into_bytes()
}

/// `Extractor::new`, or the full parser alone (`Extractor::without_fast_path`).
type NewExtractor = fn(Option<&str>, Option<&FollowSelector>) -> Extractor;

fn extract(body: &[u8], content_type: &str, follow: Option<&FollowSelector>) -> usize {
    extract_by(Extractor::new, body, content_type, follow)
}

fn extract_by(
    new: NewExtractor,
    body: &[u8],
    content_type: &str,
    follow: Option<&FollowSelector>,
) -> usize {
    let mut ex = new(Some(content_type), follow);
    for read in body.chunks(READ_BYTES) {
        if ex.feed(read) {
            break;
        }
    }
    let found = ex.finish();
    found.title.map_or(0, |t| t.len()) + found.link.map_or(0, |l| l.len())
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("title");
    let small: [(&str, Vec<u8>); 3] = [
        ("nginx_404", NGINX_404.as_bytes().to_vec()),
        ("small_site", small_site()),
        ("small_untitled", small_untitled()),
    ];
    for (name, body) in &small {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| extract(black_box(body), NGINX_HTML, None))
        });
        // The same page through lol_html: what the fast path saves.
        group.bench_function(format!("{name}_full_parser"), |b| {
            b.iter(|| {
                extract_by(
                    Extractor::without_fast_path,
                    black_box(body),
                    NGINX_HTML,
                    None,
                )
            })
        });
    }
    let utf8 = "text/html; charset=utf-8";
    let follow = FollowSelector::parse("h3 a").expect("valid selector");
    for (name, early) in [("early", true), ("late", false)] {
        let body = page(early);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("title_{name}"), |b| {
            b.iter(|| extract(black_box(&body), utf8, None))
        });
    }
    let body = page(false);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("follow_link_last", |b| {
        b.iter(|| extract(black_box(&body), utf8, Some(&follow)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
