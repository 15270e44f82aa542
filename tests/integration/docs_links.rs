//! The README is a front door and the book in `docs/` holds the rest: every relative link in
//! either leads to a file that exists and, with a `#fragment`, to a heading in it, and every
//! chapter is in the book's table of contents.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chapters(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chapters(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "md") {
            found.push(path);
        }
    }
}

/// The lines of `text` outside fenced code blocks, with inline code spans removed.
fn prose(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            let spans: Vec<&str> = line.split('`').collect();
            lines.push(spans.iter().step_by(2).copied().collect::<Vec<_>>().join(""));
        }
    }
    lines
}

/// A heading's fragment, as GitHub and mdBook make it: lower case, letters, digits, `-` and
/// `_` kept, spaces made `-`, the rest dropped; a repeated one gets `-1`, `-2`, ...
fn fragments(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(title) = line.strip_prefix('#').filter(|_| !fenced) else { continue };
        let title = title.trim_start_matches('#').trim();
        let mut fragment = String::new();
        for character in title.to_lowercase().chars() {
            if character.is_alphanumeric() || character == '-' || character == '_' {
                fragment.push(character);
            } else if character.is_whitespace() {
                fragment.push('-');
            }
        }
        let mut unique = fragment.clone();
        let mut n = 0;
        while seen.contains(&unique) {
            n += 1;
            unique = format!("{fragment}-{n}");
        }
        seen.insert(unique);
    }
    seen
}

/// Every `](target)` of `text` that is not a web address, with its line number.
fn relative_links(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    for (number, line) in prose(text).iter().enumerate() {
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split_whitespace().next().unwrap_or("").to_owned();
            if !(target.contains("://") || target.starts_with("mailto:") || target.is_empty()) {
                links.push((number + 1, target));
            }
        }
    }
    links
}

/// What is wrong with each relative link of the file at `path`.
fn broken_links(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut broken = Vec::new();
    for (line, target) in relative_links(&text) {
        let (file, fragment) = target.split_once('#').map_or((target.as_str(), None), |(f, a)| (f, Some(a)));
        let resolved = if file.is_empty() { path.to_owned() } else { path.parent().unwrap().join(file) };
        let shown = format!("{}:{line}: {target}", path.strip_prefix(root()).unwrap_or(path).display());
        if !resolved.exists() {
            broken.push(format!("{shown}: no such file"));
            continue;
        }
        if let Some(fragment) = fragment
            && resolved.extension().is_some_and(|extension| extension == "md")
            && !fragments(&std::fs::read_to_string(&resolved).unwrap()).contains(fragment)
        {
            broken.push(format!("{shown}: no such heading"));
        }
    }
    broken
}

#[test]
fn every_relative_link_of_the_readme_and_the_book_leads_somewhere() {
    let mut files = vec![root().join("README.md")];
    chapters(&root().join("docs/src"), &mut files);
    assert!(files.len() > 10, "{files:?}");
    let broken: Vec<String> = files.iter().flat_map(|file| broken_links(file)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_chapter_is_in_the_table_of_contents_and_every_entry_is_a_chapter() {
    let summary_path = root().join("docs/src/SUMMARY.md");
    let summary = std::fs::read_to_string(&summary_path).unwrap();
    let listed: BTreeSet<String> = relative_links(&summary).into_iter().map(|(_, target)| target).collect();
    let mut found = Vec::new();
    chapters(&root().join("docs/src"), &mut found);
    let written: BTreeSet<String> = found
        .iter()
        .map(|path| path.strip_prefix(root().join("docs/src")).unwrap().to_string_lossy().into_owned())
        .filter(|path| path != "SUMMARY.md")
        .collect();
    assert_eq!(listed, written, "SUMMARY.md against the chapters in docs/src");
}

#[test]
fn the_readme_stays_a_front_door() {
    let lines = std::fs::read_to_string(root().join("README.md")).unwrap().lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; move the detail into a chapter of docs/");
}

#[test]
fn a_link_to_a_missing_file_or_heading_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.md"), "# A\n## The `[server]` table\n").unwrap();
    let page = dir.path().join("b.md");
    std::fs::write(&page, "[ok](a.md#the-server-table) [gone](c.md) [no heading](a.md#nope)\n").unwrap();
    assert!(fragments("# A\n## The `[server]` table\n").contains("the-server-table"));
    let broken = broken_links(&page);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].ends_with("c.md: no such file"), "{broken:?}");
    assert!(broken[1].ends_with("a.md#nope: no such heading"), "{broken:?}");
}
