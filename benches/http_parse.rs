//! Criterion micro-benches for the sans-IO HTTP client: response head parsing alone, and a
//! whole typical response (head + ~64 KiB chunked HTML body) through `ResponseReader`,
//! plain and gzip-encoded, fed in socket-sized reads. Throughput is in input bytes.

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::write::GzEncoder;
use flate2::Compression;
use ringcrawl::http::response::parse_head;
use ringcrawl::http::{BodyEvent, ResponseReader};

/// Size of the HTML page in the body benches.
const PAGE_BYTES: usize = 64 * 1024;
/// Bytes handed to the reader per `feed`, as one socket read would.
const READ_BYTES: usize = 16 * 1024;
/// Chunk size the "server" uses for the chunked encoding.
const CHUNK_BYTES: usize = 8 * 1024;
/// Body limit: larger than any bench body.
const MAX_BODY: u64 = 4 << 20;

const HEAD: &str = "HTTP/1.1 200 OK\r\n\
Date: Mon, 23 Nov 2026 07:00:00 GMT\r\n\
Server: nginx/1.26.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Transfer-Encoding: chunked\r\n\
Connection: keep-alive\r\n\
Vary: Accept-Encoding\r\n\
Last-Modified: Sun, 22 Nov 2026 12:00:00 GMT\r\n\
ETag: W/\"5f3a-65a1b2c3\"\r\n\
Cache-Control: max-age=600\r\n\
X-Content-Type-Options: nosniff\r\n\
Strict-Transport-Security: max-age=31536000\r\n";

fn page() -> Vec<u8> {
    let mut v = b"<!doctype html><html><head><title>A typical page</title></head><body>\n".to_vec();
    let mut i = 0u32;
    while v.len() < PAGE_BYTES {
        v.extend_from_slice(
            format!(
                "<p class=\"c{}\">Paragraph {i} with <a href=\"/p/{i}\">a link</a>.</p>\n",
                i % 7
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(PAGE_BYTES);
    v
}

fn response(extra_header: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{HEAD}{extra_header}\r\n").into_bytes();
    for c in body.chunks(CHUNK_BYTES) {
        v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        v.extend_from_slice(c);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"0\r\n\r\n");
    v
}

/// Feed one response in socket-sized reads; returns decoded body bytes.
fn read_response(input: &[u8]) -> usize {
    let mut reader = ResponseReader::new(MAX_BODY, false);
    let mut body = 0;
    for read in input.chunks(READ_BYTES) {
        reader
            .feed(read, &mut |ev| {
                if let BodyEvent::Data(d) = ev {
                    body += d.len();
                }
            })
            .expect("valid response");
    }
    assert!(reader.is_done());
    body
}

fn bench(c: &mut Criterion) {
    let plain = response("", &page());
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&page()).expect("in-memory gzip");
    let gzipped = response(
        "Content-Encoding: gzip\r\n",
        &gz.finish().expect("in-memory gzip"),
    );

    let mut group = c.benchmark_group("http_parse");
    let head = format!("{HEAD}\r\n");
    group.throughput(Throughput::Bytes(head.len() as u64));
    group.bench_function("head", |b| {
        b.iter(|| parse_head(black_box(head.as_bytes())).expect("valid head"))
    });
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("chunked_64k", |b| {
        b.iter(|| read_response(black_box(&plain)))
    });
    group.throughput(Throughput::Bytes(gzipped.len() as u64));
    group.bench_function("chunked_gzip_64k", |b| {
        b.iter(|| read_response(black_box(&gzipped)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
