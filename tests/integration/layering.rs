//! The crate's modules form layers at every depth: `src/lib.rs` declares
//! the top-level ones top down, each room's `mod.rs` its own, and a module
//! may use only those below it in its room (or, through them, anything
//! lower down), never its room's root. An import that goes up (and so any
//! cycle) fails here, naming the file and the line.
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

/// The modules a module file declares (`mod x;`, `pub(crate) mod x;`), in
/// order: its layers, top down.
fn declared_children(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))
                .or_else(|| l.strip_prefix("pub mod "))
        })
        .filter_map(|rest| rest.split(';').next())
        .filter(|name| !name.contains(' ') && !name.contains('{'))
        .map(str::to_string)
        .collect()
}

/// Every module of the crate (as its path of names) and the children it
/// declares, top down.
struct Tree {
    children: BTreeMap<Vec<String>, Vec<String>>,
}

impl Tree {
    fn read(src: &Path) -> Tree {
        let mut children = BTreeMap::new();
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        children.insert(Vec::new(), declared_order(&lib));
        let mut files = Vec::new();
        rust_files(src, &mut files);
        for file in files {
            let Some(module) = module_of(src, &file) else {
                continue;
            };
            let text = std::fs::read_to_string(&file).unwrap();
            let declared = declared_children(&text);
            if !declared.is_empty() && !module.is_empty() {
                children.insert(module, declared);
            }
        }
        Tree { children }
    }

    /// The module a path of names (after `crate::`) reaches: the longest
    /// prefix that names declared modules.
    fn resolve(&self, names: &[&str]) -> Vec<String> {
        let mut module: Vec<String> = Vec::new();
        for name in names {
            let declared = self.children.get(&module);
            if declared.is_some_and(|c| c.iter().any(|m| m == name)) {
                module.push(name.to_string());
            } else {
                break;
            }
        }
        module
    }

    /// Where `name` lies among the children of `parent`: 0 at the top.
    fn rank(&self, parent: &[String], name: &str) -> Option<usize> {
        self.children.get(parent)?.iter().position(|m| m == name)
    }
}

/// A source file's module path (`src/holder/client.rs`: holder, client;
/// `src/hooks/mod.rs`: hooks), or None for the crate root and executables.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(src).unwrap();
    let mut names: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = names.pop()?;
    if names.first().is_some_and(|n| n == "bin") || (names.is_empty() && last == "lib.rs") {
        return None;
    }
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        names.push(stem.to_string());
    }
    Some(names)
}

/// The paths of names a line of code uses, after `crate::` (each member of
/// a group on its own) or `super::` (made absolute from `module`).
fn used_paths(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (anchor, base) in [
        ("crate::", &[][..]),
        ("super::", &module[..module.len().saturating_sub(1)]),
    ] {
        let mut rest = line;
        while let Some(at) = rest.find(anchor) {
            let before = &rest[..at];
            rest = &rest[at + anchor.len()..];
            // `crate::` inside a longer path (`$crate::`) or `super::super::`.
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                continue;
            }
            let prefix = path_text(rest);
            let after = &rest[prefix.len()..];
            let mut head: Vec<String> = base.to_vec();
            head.extend(split_path(&prefix));
            match after.strip_prefix('{') {
                Some(group) => paths.extend(group_members(group).iter().map(|m| {
                    let mut path = head.clone();
                    path.extend(split_path(m));
                    path
                })),
                None => paths.push(head),
            }
        }
    }
    paths.retain(|p| !p.is_empty());
    paths
}

/// The `a::b::c` at the start of `text`.
fn path_text(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect()
}

fn split_path(text: &str) -> Vec<String> {
    text.split("::")
        .filter(|s| !s.is_empty() && *s != "self")
        .map(str::to_string)
        .collect()
}

/// The members of a `{a::b, c::{d, e}}` group, as paths (a nested group
/// counts as its prefix).
fn group_members(group: &str) -> Vec<String> {
    let mut members = vec![String::new()];
    let mut depth = 0;
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => members.push(String::new()),
            c if depth == 0 && (c.is_alphanumeric() || c == '_' || c == ':') => {
                members.last_mut().unwrap().push(c)
            }
            _ => {}
        }
    }
    members
        .into_iter()
        .map(|m| m.trim_end_matches(':').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn used_paths_reads_plain_paths_groups_and_super() {
    let module = ["holder".to_string(), "client".to_string()];
    assert_eq!(
        used_paths("use crate::{error::Error, os::{fork, mounts}};", &module),
        [vec!["error", "Error"], vec!["os"]]
    );
    assert_eq!(
        used_paths("use crate::holder::{launch, protocol::Request};", &module),
        [
            vec!["holder", "launch"],
            vec!["holder", "protocol", "Request"]
        ]
    );
    assert_eq!(
        used_paths("use super::launch::start;", &module),
        [vec!["holder", "launch", "start"]]
    );
}

/// One import that goes up, or sideways to the room's own root.
fn upward_use(tree: &Tree, from: &[String], used: &[String]) -> Option<String> {
    let common = from.iter().zip(used).take_while(|(a, b)| a == b).count();
    let parent = &from[..common];
    match (from.get(common), used.get(common)) {
        // The same module, or one of its own children: its facade.
        (None, _) => None,
        // A room's root is its top: a child may not use what it holds.
        (Some(_), None) => Some(format!("uses its room {}", parent.join("::"))),
        (Some(f), Some(u)) => {
            let (rf, ru) = (tree.rank(parent, f)?, tree.rank(parent, u)?);
            (ru < rf).then(|| format!("uses {}, which lies above it", used.join("::")))
        }
    }
}

#[test]
fn imports_only_go_down_at_every_depth() {
    let src = crate_dir().join("src");
    let tree = Tree::read(&src);
    assert!(
        tree.children[&Vec::new()].len() >= 8,
        "lib.rs declares too little"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let relative = file.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut in_tests = false;
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue; // a doc link is no dependency
            }
            // A module's own unit tests may use anything.
            if code.starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            if in_tests {
                continue;
            }
            for path in used_paths(line, &module) {
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                let used = tree.resolve(&names);
                assert!(
                    !used.is_empty(),
                    "{}:{}: {} is not a module the crate declares",
                    relative.display(),
                    n + 1,
                    path.join("::")
                );
                if let Some(why) = upward_use(&tree, &module, &used) {
                    upward.push(format!(
                        "{}:{}: {} {why}",
                        relative.display(),
                        n + 1,
                        module.join("::")
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up (each mod.rs and lib.rs list their modules top down):\n{}",
        upward.join("\n")
    );
}
