//! Title extraction throughput (`html::Extractor`) on a ~100 KiB page, with the title early
//! (reading stops at `</title>`) and late (the whole page goes through the tokenizer), fed in
//! 16 KiB reads like the fetch loop; plus the `--follow` link search.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringcrawl::html::{Extractor, FollowSelector};

/// Size of the generated page.
const PAGE_BYTES: usize = 100 * 1024;
/// Size of each `feed` call, like one socket read.
const READ_BYTES: usize = 16 * 1024;

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

fn extract(body: &[u8], follow: Option<&FollowSelector>) -> usize {
    let mut ex = Extractor::new(Some("text/html; charset=utf-8"), follow);
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
    let follow = FollowSelector::parse("h3 a").expect("valid selector");
    for (name, early) in [("early", true), ("late", false)] {
        let body = page(early);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("title_{name}"), |b| {
            b.iter(|| extract(black_box(&body), None))
        });
    }
    let body = page(false);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("follow_link_last", |b| {
        b.iter(|| extract(black_box(&body), Some(&follow)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
