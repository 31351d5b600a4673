//! The repository's Markdown documents link only to files that a clone has: every relative
//! link (and image) must point to a file or directory inside the repository, tracked by git
//! when git is available, and a `#fragment` must name a heading of its target. Links that
//! leave the repository (`../shared/...`) fail. Web links are not fetched (no network).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The documents checked, relative to the repository root.
const DOCS: [&str; 5] = [
    "README.md",
    "ARCHITECTURE.md",
    "systemd/README.md",
    "benches/README.md",
    "fuzz/README.md",
];

/// One link found in a document: its 1-based line and its target as written.
#[derive(Debug, PartialEq, Eq)]
struct Link {
    line: usize,
    target: String,
}

/// The link targets of `markdown`: inline links and images `[text](target "title")`,
/// `[text](<target>)` and reference definitions `[label]: target`. Fenced code blocks and
/// code spans are skipped.
fn links(markdown: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        let text = without_code_spans(line);
        if let Some(target) = reference_definition(&text) {
            out.push(Link {
                line: i + 1,
                target,
            });
            continue;
        }
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = closing_paren(after) else {
                break;
            };
            out.push(Link {
                line: i + 1,
                target: destination(&after[..end]),
            });
            rest = &after[end..];
        }
    }
    out
}

/// `line` with the contents of its code spans blanked out.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// The target of a reference definition line, `[label]: target`.
fn reference_definition(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (label, after) = rest.split_once("]:")?;
    if label.is_empty() || label.contains(']') {
        return None;
    }
    Some(destination(after))
}

/// The index of the `)` that closes a link destination (nested parentheses allowed).
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The destination part of `target "title"` or `<target>`.
fn destination(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('<') {
        return inner.split('>').next().unwrap_or("").to_string();
    }
    raw.split_whitespace().next().unwrap_or("").to_string()
}

/// A link to somewhere else on the web (not checked: no network in tests).
fn is_external(target: &str) -> bool {
    let scheme_len = target.find(':').filter(|&i| {
        i > 0
            && target[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    scheme_len.is_some() || target.starts_with("//")
}

/// GitHub's anchors for the headings of `markdown`: lower case, punctuation dropped, spaces
/// as `-`, repeated headings numbered `-1`, `-2`...
fn anchors(markdown: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut fence = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence || !trimmed.starts_with('#') {
            continue;
        }
        let heading = trimmed.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while !out.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
    }
    out
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Paths git tracks under `root` (files and every directory above them), or `None` when git
/// or the repository is not available (then the file system alone decides).
fn tracked(root: &Path) -> Option<HashSet<PathBuf>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut set = HashSet::new();
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut p = PathBuf::from(String::from_utf8_lossy(name).into_owned());
        set.insert(p.clone());
        while p.pop() && !p.as_os_str().is_empty() {
            set.insert(p.clone());
        }
    }
    Some(set)
}

/// Every problem with the links of the document `doc` (relative to `root`), one line each.
fn check_document(
    root: &Path,
    doc: &str,
    text: &str,
    tracked: Option<&HashSet<PathBuf>>,
) -> Vec<String> {
    let dir = Path::new(doc).parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for Link { line, target } in links(text) {
        let at = format!("{doc}:{line}: link `{target}`");
        if target.is_empty() {
            problems.push(format!("{at} is empty"));
            continue;
        }
        if is_external(&target) {
            continue;
        }
        let (path_part, fragment) = match target.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (target.as_str(), None),
        };
        let rel = if path_part.is_empty() {
            Some(PathBuf::from(doc))
        } else if path_part.starts_with('/') {
            None
        } else {
            normalize(&dir.join(path_part))
        };
        let Some(rel) = rel else {
            problems.push(format!("{at} leaves the repository"));
            continue;
        };
        let full = root.join(&rel);
        if !full.exists() {
            problems.push(format!("{at}: {} does not exist", rel.display()));
            continue;
        }
        if tracked.is_some_and(|t| !t.contains(&rel)) {
            problems.push(format!(
                "{at}: {} is not tracked by git (a clone will not have it)",
                rel.display()
            ));
            continue;
        }
        if let Some(fragment) = fragment {
            if rel.extension().is_some_and(|e| e == "md") {
                let target_text = if path_part.is_empty() {
                    text.to_string()
                } else {
                    std::fs::read_to_string(&full).unwrap_or_default()
                };
                if !anchors(&target_text).contains(fragment) {
                    problems.push(format!(
                        "{at}: no heading with anchor #{fragment} in {}",
                        rel.display()
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn markdown_links_stay_inside_the_repository_and_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tracked = tracked(root);
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in DOCS {
        let text = std::fs::read_to_string(root.join(doc))
            .unwrap_or_else(|e| panic!("cannot read {doc}: {e}"));
        checked += links(&text).len();
        problems.extend(check_document(root, doc, &text, tracked.as_ref()));
    }
    assert!(
        checked > 0,
        "no links found at all: is the extractor broken?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_reports_missing_escaping_and_dangling_links() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = "benches/README.md";
    let text = "\
# Title

See [the map](../ARCHITECTURE.md#module-map), [ok](README.md) and [web](https://example.com/).
[gone](missing.md) and ![img](../nope.png \"alt\") and [up](../../shared/ARCHITECTURE.md).
[bad anchor](../README.md#no-such-heading) [self](#title) [self bad](#nope)
`[not a link](code.md)`

```
[not a link either](fenced.md)
```

[ref]: <../Cargo.toml>
[ref2]: ../../outside.md
";
    let problems = check_document(root, doc, text, None);
    let expect = [
        "link `missing.md`: benches/missing.md does not exist",
        "link `../nope.png`: nope.png does not exist",
        "link `../../shared/ARCHITECTURE.md` leaves the repository",
        "link `../README.md#no-such-heading`: no heading with anchor #no-such-heading",
        "link `#nope`: no heading with anchor #nope",
        "link `../../outside.md` leaves the repository",
    ];
    for want in expect {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want:?} not reported in:\n{}",
            problems.join("\n")
        );
    }
    assert_eq!(problems.len(), expect.len(), "{}", problems.join("\n"));
}

#[test]
fn anchors_follow_github() {
    let a = anchors("# ringcrawl architecture\n## Spool and exactly-once\n## Limits\n## Limits\n### `fetch` flags: (defaults)\n");
    for want in [
        "ringcrawl-architecture",
        "spool-and-exactly-once",
        "limits",
        "limits-1",
        "fetch-flags-defaults",
    ] {
        assert!(a.contains(want), "{want} not in {a:?}");
    }
}
