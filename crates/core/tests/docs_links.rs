//! Every relative link in `README.md` and `docs/*.md` resolves: the file (or directory) exists,
//! and an anchor (`#section`) names a heading of the Markdown file it points into (GitHub's
//! rule for heading ids). Links inside fenced code blocks are text, not links.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The Markdown files whose links are checked.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut out = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(line);
        }
    }
    out
}

/// The targets of inline links `[text](target)` on a line, outside inline code spans.
fn link_targets(line: &str) -> Vec<String> {
    // Drop `code spans` first: `a[i](x)` in code is not a link.
    let mut plain = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            plain.push_str(part);
        }
    }
    let mut out = Vec::new();
    let mut rest = plain.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_string());
        rest = &after[end..];
    }
    out
}

/// GitHub's heading ids of a Markdown text: lower case, punctuation dropped (but `-` and `_`),
/// spaces to `-`, a repeated id gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text) {
        let t = line.trim_start();
        if !t.starts_with('#') {
            continue;
        }
        let title = t.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut id = base.clone();
        let mut n = 0;
        while seen.contains(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        seen.insert(id);
    }
    seen
}

fn broken_links() -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        for line in prose(&text) {
            for target in link_targets(line) {
                if target.is_empty()
                    || target.contains("://")
                    || target.starts_with("mailto:")
                    || target.starts_with('<')
                {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let file = if path.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(path)
                };
                if !file.exists() {
                    broken.push(format!("{name}: {target}: no such file"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if file.extension().is_some_and(|x| x == "md") {
                        let ids = anchors(&std::fs::read_to_string(&file).unwrap());
                        if !ids.contains(anchor) {
                            broken.push(format!("{name}: {target}: no heading with that id"));
                        }
                    }
                }
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let broken = broken_links();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_links_anchors_and_code() {
    assert_eq!(
        link_targets("see [a](docs/x.md#y) and `[b](not/a/link)` or [c](<z>)"),
        ["docs/x.md#y", "<z>"]
    );
    let ids = anchors("# Top\n## Switchover and failover\n```\n# not a heading\n```\n## `pgnode status`\n## Top\n");
    assert!(ids.contains("switchover-and-failover"), "{ids:?}");
    assert!(ids.contains("pgnode-status"), "{ids:?}");
    assert!(ids.contains("top-1"), "{ids:?}");
    assert!(!ids.contains("not-a-heading"), "{ids:?}");
    assert!(pages().len() >= 6, "README and the docs pages");
}
