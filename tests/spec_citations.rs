//! The contract lives in the repository (docs/spec.md), and every `§n` or
//! `§n.m` cited in code, tests, shaders and documents names a section that
//! exists there: `## n.` and `### n.m` headings, and the numbered stages of §3
//! (`docs/spec.md §3.5` is stage 5 of that list).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sections docs/spec.md defines, as "n" or "n.m".
fn sections(spec: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut current = String::new();
    for line in spec.lines() {
        if let Some(rest) = line.strip_prefix("## ") {
            current = rest.split('.').next().unwrap_or("").to_string();
            out.insert(current.clone());
        } else if let Some(rest) = line.strip_prefix("### ") {
            out.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if current == "3" {
            // The stage list: "1. **Bias & mask.** …".
            if let Some((n, tail)) = line.split_once(". **") {
                if !tail.is_empty() && n.chars().all(|c| c.is_ascii_digit()) {
                    out.insert(format!("3.{n}"));
                }
            }
        }
    }
    out
}

/// Every section number cited after a `§` in `text`: "§3.4–3.7" gives 3.4 and
/// 3.7, "§3–§6" gives 3 and 6.
fn citations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('§') {
        let mut rest = &text[i + '§'.len_utf8()..];
        loop {
            let num: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let num = num.trim_end_matches('.');
            if num.is_empty() {
                break;
            }
            out.push(num.to_string());
            rest = &rest[num.len()..];
            // "–3.7" continues a range; "–§6" is the next match's.
            match rest.strip_prefix('–') {
                Some(r) if !r.starts_with('§') => rest = r,
                _ => break,
            }
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files(&p, out);
            }
        } else if [".rs", ".md", ".wgsl", ".sh", ".toml"]
            .iter()
            .any(|x| name.ends_with(x))
        {
            out.push(p);
        }
    }
}

#[test]
fn every_citation_names_a_section_of_docs_spec() {
    let spec = std::fs::read_to_string(root().join("docs/spec.md")).expect("docs/spec.md exists");
    let known = sections(&spec);
    for s in [
        "1", "3", "3.1", "3.8", "7", "11", "12", "13", "13.1", "13.2", "13.4",
    ] {
        assert!(known.contains(s), "docs/spec.md lacks §{s}: {known:?}");
    }
    // The stage list gives §3.1–3.8 and the `###` headings §3.9–3.15.
    assert!(
        known.contains("3.15") && !known.contains("3.16"),
        "{known:?}"
    );
    let mut all = Vec::new();
    for dir in [
        "src", "tests", "examples", "benches", "shaders", "docs", "crates", "scripts",
    ] {
        files(&root().join(dir), &mut all);
    }
    all.push(root().join("README.md"));
    all.push(root().join("Cargo.toml"));
    let mut bad = Vec::new();
    let mut cited = 0;
    for f in &all {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for c in citations(&text) {
            cited += 1;
            if !known.contains(&c) {
                bad.push(format!(
                    "{}: §{c}",
                    f.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(cited > 100, "only {cited} citations found");
    assert!(
        bad.is_empty(),
        "citations of sections docs/spec.md does not have:\n{}",
        bad.join("\n")
    );
}

#[test]
fn citation_parsing() {
    assert_eq!(
        citations("see §3.4–3.7 and §3–§6, §13.2."),
        ["3.4", "3.7", "3", "6", "13.2"]
    );
    let s =
        sections("## 3. The pipeline\n1. **Bias.** x\n2. **Pen.** y\n## 13. Lib\n### 13.2 Seq\n");
    assert_eq!(
        s.into_iter().collect::<Vec<_>>(),
        ["13", "13.2", "3", "3.1", "3.2"]
    );
}
