//! Generator for a multi-host static site (written to a directory nginx serves) and the exact
//! record expected for every URL of it.
//!
//! Hosts `hNNNN.site.test` carry `pages` pages each, cycling through every [`PageKind`], plus
//! per host: a 404 with a title, a same-host redirect, a two-hop redirect chain and a
//! cross-host redirect (nginx `return`). Blog hosts `bNNN.blog.test` have an index whose first
//! `h3 a` link points to an article, for `--follow 'h3 a'`; one blog has no such link.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::pages::{render, ContentType, PageKind};

/// Domain of the generated page hosts.
pub const SITE_DOMAIN: &str = "site.test";
/// Domain of the generated blog hosts.
pub const BLOG_DOMAIN: &str = "blog.test";

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct SiteSpec {
    pub hosts: usize,
    pub pages: usize,
    pub blogs: usize,
}

/// A nginx `return` rule for one host: exact path -> status + target (`$scheme`/`$server_port`
/// may appear in the target).
#[derive(Clone, Debug)]
pub struct Redirect {
    pub path: String,
    pub status: u16,
    pub target: String,
}

/// One virtual host: its name, document root and redirect rules.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    /// More names nginx serves this host under (e.g. `localhost`, which a proxy can
    /// resolve); none from the generator.
    pub aliases: Vec<String>,
    pub root: PathBuf,
    pub redirects: Vec<Redirect>,
}

/// The record a correct crawler writes for one URL (host-relative until [`Site::expect`]
/// fills in scheme and port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub url: String,
    pub final_url: String,
    pub status: u16,
    pub title: Option<String>,
    pub truncated: bool,
    pub redirects: u32,
    /// `--follow` runs: the absolute link followed.
    pub link: Option<String>,
    /// `--follow` runs: expected error kind (only `no_link` here).
    pub error_kind: Option<&'static str>,
}

/// Relative form: (host, path) pairs; the origin is added per scheme/port.
#[derive(Clone, Debug)]
struct RelExpect {
    host: String,
    path: String,
    final_host: String,
    final_path: String,
    status: u16,
    title: Option<String>,
    truncated: bool,
    redirects: u32,
}

#[derive(Clone, Debug)]
struct RelBlog {
    host: String,
    /// (link path, article title); `None` = the index has no `h3 a` link.
    article: Option<(String, String)>,
}

/// A generated site on disk.
#[derive(Debug)]
pub struct Site {
    pub hosts: Vec<Host>,
    pages: Vec<RelExpect>,
    blogs: Vec<RelBlog>,
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn page_path(j: usize, ct: ContentType) -> String {
    format!("/p{j:04}.{}", ct.extension())
}

impl Site {
    /// Write the site under `dir` (one document root per host).
    pub fn generate(dir: &Path, spec: SiteSpec) -> Site {
        assert!(
            spec.pages >= 2,
            "need at least two pages per host for the redirects"
        );
        let mut hosts = Vec::new();
        let mut pages = Vec::new();
        let host_name = |i: usize| format!("h{i:04}.{SITE_DOMAIN}");
        for i in 0..spec.hosts {
            let name = host_name(i);
            let root = dir.join(&name);
            let mut paths = Vec::new();
            for j in 0..spec.pages {
                let kind = PageKind::ALL[(i * 7 + j) % PageKind::ALL.len()];
                let page = render(kind, &format!("{name} p{j:04}"));
                let path = page_path(j, page.content_type);
                write(&root.join(&path[1..]), &page.body);
                pages.push(RelExpect {
                    host: name.clone(),
                    path: path.clone(),
                    final_host: name.clone(),
                    final_path: path.clone(),
                    status: 200,
                    title: page.title.clone(),
                    truncated: page.truncated,
                    redirects: 0,
                });
                paths.push((path, page));
            }
            let not_found_title = format!("Not found on {name}");
            let nf = format!("<!DOCTYPE html><html><head><title>{not_found_title}</title></head><body>404</body></html>\n");
            write(&root.join("404.html"), nf.as_bytes());
            pages.push(RelExpect {
                host: name.clone(),
                path: "/missing.html".into(),
                final_host: name.clone(),
                final_path: "/missing.html".into(),
                status: 404,
                title: Some(not_found_title),
                truncated: false,
                redirects: 0,
            });
            // Same-host redirect, a two-hop chain, and a cross-host redirect.
            let (p0, page0) = &paths[0];
            let (p1, page1) = &paths[1];
            let next = host_name((i + 1) % spec.hosts);
            let next_p0 = {
                let k = PageKind::ALL[((i + 1) % spec.hosts * 7) % PageKind::ALL.len()];
                let pg = render(k, &format!("{next} p0000"));
                (page_path(0, pg.content_type), pg)
            };
            let redirects = vec![
                Redirect {
                    path: "/old".into(),
                    status: 301,
                    target: p1.clone(),
                },
                Redirect {
                    path: "/chain".into(),
                    status: 302,
                    target: "/old".into(),
                },
                Redirect {
                    path: "/away".into(),
                    status: 307,
                    target: format!("$scheme://{next}:$server_port{}", next_p0.0),
                },
                Redirect {
                    path: "/moved".into(),
                    status: 308,
                    target: p0.clone(),
                },
            ];
            for (path, fin_host, fin_path, page, hops) in [
                ("/old", &name, p1, page1, 1),
                ("/chain", &name, p1, page1, 2),
                ("/away", &next, &next_p0.0, &next_p0.1, 1),
                ("/moved", &name, p0, page0, 1),
            ] {
                pages.push(RelExpect {
                    host: name.clone(),
                    path: path.into(),
                    final_host: fin_host.clone(),
                    final_path: fin_path.clone(),
                    status: 200,
                    title: page.title.clone(),
                    truncated: page.truncated,
                    redirects: hops,
                });
            }
            hosts.push(Host {
                name,
                aliases: Vec::new(),
                root,
                redirects,
            });
        }
        let mut blogs = Vec::new();
        for b in 0..spec.blogs {
            let name = format!("b{b:03}.{BLOG_DOMAIN}");
            let root = dir.join(&name);
            let article_title = format!("Blog {b} — first article");
            let (href, link_path) = match b % 3 {
                0 => (
                    format!("posts/first-{b}.html"),
                    format!("/posts/first-{b}.html"),
                ),
                1 => (
                    format!("/posts/first-{b}.html"),
                    format!("/posts/first-{b}.html"),
                ),
                _ => (
                    format!("/posts/first-{b}.html?from=index&amp;n={b}"),
                    format!("/posts/first-{b}.html?from=index&n={b}"),
                ),
            };
            let has_link = !(spec.blogs > 1 && b == spec.blogs - 1);
            let mut index = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\">");
            let _ = write!(index, "<title>Blog {b} — index</title></head><body>");
            index.push_str("<nav><a href=\"/about.html\">About</a></nav>");
            index.push_str("<h2><a href=\"/posts/wrong-h2.html\">Not an h3</a></h2>");
            if has_link {
                let _ = write!(index, "<article><h3><a href=\"{href}\">First post</a></h3>");
                index.push_str("<p>Summary</p></article>");
                index.push_str(
                    "<article><h3><a href=\"/posts/second.html\">Second</a></h3></article>",
                );
            } else {
                index.push_str("<h3>No link in this heading</h3>");
            }
            index.push_str("</body></html>\n");
            write(&root.join("index.html"), index.as_bytes());
            let article = format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{article_title}</title></head><body><p>Text</p></body></html>\n"
            );
            write(
                &root.join(format!("posts/first-{b}.html")),
                article.as_bytes(),
            );
            let second =
                "<!DOCTYPE html><html><head><title>wrong: second article</title></head></html>\n";
            write(&root.join("posts/second.html"), second.as_bytes());
            blogs.push(RelBlog {
                host: name.clone(),
                article: has_link.then_some((link_path, article_title)),
            });
            hosts.push(Host {
                name,
                aliases: Vec::new(),
                root,
                redirects: Vec::new(),
            });
        }
        Site {
            hosts,
            pages,
            blogs,
        }
    }

    /// Every host name (for DNS).
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Every page URL of the site with its expected record, for `scheme://host:port`.
    pub fn expect(&self, scheme: &str, port: u16) -> Vec<Expect> {
        self.pages
            .iter()
            .map(|p| Expect {
                url: format!("{scheme}://{}:{port}{}", p.host, p.path),
                final_url: format!("{scheme}://{}:{port}{}", p.final_host, p.final_path),
                status: p.status,
                title: p.title.clone(),
                truncated: p.truncated,
                redirects: p.redirects,
                link: None,
                error_kind: None,
            })
            .collect()
    }

    /// Blog index URLs with the expected `--follow 'h3 a'` record.
    pub fn expect_follow(&self, scheme: &str, port: u16) -> Vec<Expect> {
        self.blogs
            .iter()
            .map(|b| {
                let url = format!("{scheme}://{}:{port}/", b.host);
                match &b.article {
                    Some((path, title)) => {
                        let link = format!("{scheme}://{}:{port}{path}", b.host);
                        Expect {
                            url,
                            final_url: link.clone(),
                            status: 200,
                            title: Some(title.clone()),
                            truncated: false,
                            redirects: 0,
                            link: Some(link),
                            error_kind: None,
                        }
                    }
                    None => Expect {
                        final_url: url.clone(),
                        url,
                        status: 200,
                        title: None,
                        truncated: false,
                        redirects: 0,
                        link: None,
                        error_kind: Some("no_link"),
                    },
                }
            })
            .collect()
    }
}

/// Compare one journal record with its expectation; returns a description of every mismatch
/// (empty when it matches). `follow` also checks `link` and the error kind.
pub fn mismatches(exp: &Expect, rec: &serde_json::Value, follow: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |field: &str, want: serde_json::Value| {
        if rec[field] != want {
            out.push(format!("{field}: want {want}, got {}", rec[field]));
        }
    };
    if let Some(kind) = exp.error_kind {
        check("title", serde_json::Value::Null);
        if rec["error"]["kind"] != kind {
            out.push(format!("error.kind: want {kind}, got {}", rec["error"]));
        }
        return out;
    }
    check("error", serde_json::Value::Null);
    check("status", exp.status.into());
    check("final_url", exp.final_url.clone().into());
    check("redirects", exp.redirects.into());
    check("title", exp.title.clone().into());
    if follow {
        check("link", exp.link.clone().into());
    }
    let truncated = rec
        .get("title_truncated")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if truncated != exp.truncated {
        out.push(format!(
            "title_truncated: want {}, got {truncated}",
            exp.truncated
        ));
    }
    out
}
