//! The crate's top-level modules form layers: `src/lib.rs` declares them top
//! down, and a module may use only those below it. An import that goes up
//! (and so any cycle) fails here, naming the file and the line.
//!
//! `cargo test --test integration layering` runs just this check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::crate_dir;

/// The top-level modules in the order `src/lib.rs` declares them.
fn declared_order(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod "))
        .filter_map(|rest| rest.split(';').next())
        .filter(|name| !name.contains(' ') && !name.contains('{'))
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a line of code names through `crate::`, including
/// every first segment of a `crate::{a, b::c}` group.
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        names.push(String::new());
                        start = false;
                        names.last_mut().unwrap().push(c);
                    }
                    c if c.is_alphanumeric() || c == '_' => {
                        if let Some(last) = names.last_mut().filter(|_| depth == 0) {
                            if !last.contains(':') {
                                last.push(c);
                            }
                        }
                    }
                    ':' => {
                        if let Some(last) = names.last_mut().filter(|_| depth == 0) {
                            if !last.ends_with(':') {
                                last.push(':');
                            }
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|n| n.trim_end_matches(':').to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn crate_paths_reads_plain_paths_and_groups() {
    assert_eq!(crate_paths("use crate::os::fork::lock;"), ["os"]);
    assert_eq!(
        crate_paths("use crate::{error::Error, os::{fork, mounts}, store};"),
        ["error", "os", "store"]
    );
    assert_eq!(
        crate_paths("let x = crate::config::a(crate::os::b());"),
        ["config", "os"]
    );
}

#[test]
fn imports_between_top_level_modules_only_go_down() {
    let src = crate_dir().join("src");
    let order = declared_order(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(order.len() >= 8, "lib.rs declares {order:?}");
    let rank = |name: &str| order.iter().position(|m| m == name);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap();
        let module = Path::new(first.as_os_str())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // The crate root and the executables stand above every layer.
        let Some(from) = rank(&module) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue; // a doc link is no dependency
            }
            for used in crate_paths(line) {
                let Some(to) = rank(&used) else {
                    panic!(
                        "{}:{}: crate::{used} is not a module lib.rs declares",
                        relative.display(),
                        n + 1
                    );
                };
                if to == from {
                    continue;
                }
                *edges.entry((module.clone(), used.clone())).or_default() += 1;
                if to < from {
                    upward.push(format!(
                        "{}:{}: {module} uses {used}, which lies above it",
                        relative.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    let graph: Vec<String> = edges.keys().map(|(a, b)| format!("{a} -> {b}")).collect();
    assert!(
        upward.is_empty(),
        "imports that go up (layers, top down: {order:?}):\n{}\nall edges:\n{}",
        upward.join("\n"),
        graph.join("\n")
    );
}
