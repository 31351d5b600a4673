#!/usr/bin/env python3
"""Generates the end-to-end bench corpus (used by benches/e2e.sh).

Owns: the static sites nginx serves (broad multi-host site, blog indexes + first articles, one
small page for `load`), the URL lists, the hosts files (one per scenario, written into the
bench network namespace) and the expected titles/links the harness checks ringcrawl against.

Usage: gen_site.py DATA_DIR
Deterministic (fixed seed): the same DATA_DIR content on every run.
"""
import json
import os
import random
import sys

VERSION = "4"
BROAD_HOSTS = 1000
PAGES_PER_HOST = 11
MIN_PAGE = 10 * 1024
MAX_PAGE = 60 * 1024
BLOG_HOSTS = 1000
LATENCY_HOSTS = 20000
LATENCY_ADDRS = 200  # 127.1.0.1 .. 127.1.0.200: spreads ephemeral ports over many 4-tuples
DELAY_PORT = 8080

# (charset label put in the page, how it is declared, title template with non-ASCII text)
CHARSETS = [
    ("utf-8", "meta", "Site {h} page {p} \u2014 na\u00efve caf\u00e9 \u2603"),
    ("windows-1252", "none", "Site {h} page {p} \u2013 caf\u00e9 \u201cquoted\u201d"),
    ("iso-8859-15", "http-equiv", "Site {h} page {p} \u20acuro \u0152uvre"),
    ("utf-8", "bom", "Site {h} page {p} \u2014 \u00dcn\u00efc\u00f6d\u00e9 \u2713"),
    ("shift_jis", "meta", "\u30b5\u30a4\u30c8 {h} \u30da\u30fc\u30b8 {p} \u65e5\u672c\u8a9e"),
    ("koi8-r", "meta", "\u0421\u0430\u0439\u0442 {h} \u0441\u0442\u0440\u0430\u043d\u0438\u0446\u0430 {p}"),
]

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris "
    "nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse"
).split()


def filler(rng, size):
    """ASCII paragraphs and links totalling about `size` bytes."""
    parts, total = [], 0
    while total < size:
        n = rng.randint(40, 120)
        text = " ".join(rng.choice(WORDS) for _ in range(n))
        chunk = f'<p class="c{n}">{text} <a href="/x/{n}.html">more</a></p>\n'
        parts.append(chunk)
        total += len(chunk)
    return "".join(parts)


def broad_page(rng, h, p):
    """One page of the broad site: (bytes, expected title)."""
    charset, how, tmpl = CHARSETS[(h * PAGES_PER_HOST + p) % len(CHARSETS)]
    title = tmpl.format(h=h, p=p)
    raw = title
    if p % 5 == 2:
        title += " Tom & Jerry"
        raw += " Tom &amp; Jerry"
    if p % 2 == 0:
        raw = "\n   " + raw.replace(" ", "  \n\t ", 1) + "  \n"
    tag = "TITLE" if p % 4 == 1 else "title"
    head = ["<!DOCTYPE html>\n<html lang=\"en\"><head>\n"]
    if how == "meta":
        head.append(f'<meta charset="{charset}">\n')
    elif how == "http-equiv":
        head.append(f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n')
    if p % 3 == 0:
        head.append("<!-- <title>comment trap</title> -->\n")
    if p % 7 == 3:
        head.append('<script>var t = "<title>script trap</title>";</script>\n')
    head.append(f"<{tag}>{raw}</{tag}>\n")
    head.append('<meta name="viewport" content="width=device-width">\n'
                '<link rel="stylesheet" href="/style.css">\n</head>\n<body>\n')
    head.append(f"<h1>Host {h}, page {p}</h1>\n")
    start = "".join(head)
    size = rng.randint(MIN_PAGE, MAX_PAGE)
    doc = start + filler(rng, size - len(start) - 20) + "</body></html>\n"
    data = doc.encode(charset)
    if how == "bom":
        data = b"\xef\xbb\xbf" + data
    return data, title


def blog_pages(rng, b):
    """(index bytes, first-article path, href as written, article bytes, article title)."""
    host = f"b{b:04d}.blog.test"
    path = f"/posts/{b}/first-article.html"
    style = b % 4
    if style == 0:
        href = path
    elif style == 1:
        href = f"http://{host}{path}"
    elif style == 2:
        href = path[1:]  # relative to "/"
    else:
        href = path + "?from=index&amp;n=1"
    link = f"http://{host}/" + (path[1:] if style != 3 else path[1:] + "?from=index&n=1")
    parts = [
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n",
        f"<title>Blog {b} \u2014 index</title>\n</head><body>\n",
        '<nav><h2><a href="/about.html">About (not an article)</a></h2></nav>\n',
        filler(rng, rng.randint(1000, 4000)),
        f'<article><h3><a href="{href}">First article of blog {b}</a></h3>\n',
    ]
    for k in range(2, 8):
        parts.append(f'<p>teaser</p></article><article><h3><a href="/posts/{b}/article-{k}.html">'
                     f"Article {k}</a></h3>\n")
    parts.append("</article>" + filler(rng, rng.randint(4000, 15000)) + "</body></html>\n")
    title = f"Blog {b}: the first article \u2014 \u00e9t\u00e9"
    art = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n"
        f"<title>{title}</title>\n</head><body>\n"
        + filler(rng, rng.randint(8000, 30000))
        + "</body></html>\n"
    )
    return "".join(parts).encode(), path, link, art.encode(), title


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    root = sys.argv[1]
    stamp = os.path.join(root, "STAMP")
    if os.path.exists(stamp) and open(stamp).read().strip() == VERSION:
        return
    rng = random.Random(20261123)
    www = os.path.join(root, "www")
    lists = os.path.join(root, "lists")
    os.makedirs(lists, exist_ok=True)
    base_hosts = "127.0.0.1 localhost\n::1 localhost\n"

    hosts, urls_http, urls_https, expect = [], [], [], []
    for h in range(BROAD_HOSTS):
        name = f"h{h:04d}.site.test"
        hosts.append(f"127.0.{1 + h // 250}.{1 + h % 250} {name}\n")
        for p in range(PAGES_PER_HOST):
            data, title = broad_page(rng, h, p)
            write(os.path.join(www, name, f"p{p}.html"), data)
            urls_http.append(f"http://{name}/p{p}.html\n")
            urls_https.append(f"https://{name}/p{p}.html\n")
            expect.append(json.dumps({"url": f"http://{name}/p{p}.html", "title": title}) + "\n")
    # Interleave hosts (page-major order) so a list is not sorted by host.
    def by_host(lst):
        return [lst[h * PAGES_PER_HOST + p] for p in range(PAGES_PER_HOST) for h in range(BROAD_HOSTS)]

    open(os.path.join(lists, "broad_http.txt"), "w").writelines(by_host(urls_http))
    open(os.path.join(lists, "broad_https.txt"), "w").writelines(by_host(urls_https))
    open(os.path.join(root, "expect_broad.jsonl"), "w").writelines(expect)

    blog_urls, blog_expect = [], []
    for b in range(BLOG_HOSTS):
        name = f"b{b:04d}.blog.test"
        hosts.append(f"127.0.{5 + b // 250}.{1 + b % 250} {name}\n")
        index, path, link, art, title = blog_pages(rng, b)
        write(os.path.join(www, name, "index.html"), index)
        write(os.path.join(www, name, path.lstrip("/")), art)
        blog_urls.append(f"http://{name}/\n")
        blog_expect.append(json.dumps({"url": f"http://{name}/", "link": link, "title": title}) + "\n")
    open(os.path.join(lists, "follow.txt"), "w").writelines(blog_urls)
    open(os.path.join(root, "expect_follow.jsonl"), "w").writelines(blog_expect)

    hosts.append("127.0.0.2 load.test\n")
    small = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Small page</title></head>"
             "<body>" + filler(rng, 400) + "</body></html>\n").encode()
    write(os.path.join(www, "load.test", "small.html"), small)
    open(os.path.join(root, "hosts_nginx"), "w").writelines([base_hosts] + hosts)

    lat_hosts, lat_urls, dns_hosts, dns_urls = [], [], [], []
    for i in range(LATENCY_HOSTS):
        addr = f"127.1.0.{1 + i % LATENCY_ADDRS}"
        lat_hosts.append(f"{addr} l{i:05d}.lat.test\n")
        lat_urls.append(f"http://l{i:05d}.lat.test:{DELAY_PORT}/\n")
        dns_hosts.append(f"{addr} l{i:05d}.dns.test\n")
        dns_urls.append(f"http://l{i:05d}.dns.test:{DELAY_PORT}/\n")
    open(os.path.join(root, "hosts_latency"), "w").writelines([base_hosts] + lat_hosts)
    open(os.path.join(root, "dnsmasq_hosts"), "w").writelines(dns_hosts)
    open(os.path.join(lists, "latency.txt"), "w").writelines(lat_urls)
    open(os.path.join(lists, "latency_dns.txt"), "w").writelines(dns_urls)

    open(stamp, "w").write(VERSION + "\n")


if __name__ == "__main__":
    main()
