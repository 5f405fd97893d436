//! The errno list is written once, in `Error::DOCUMENTED_ERRNOS`; every
//! document a C programmer reads must name each of them.

use freezefs::Error;

use crate::support::crate_dir;

fn read(path: &str) -> String {
    std::fs::read_to_string(crate_dir().join(path)).unwrap()
}

/// The part of `text` from the first line containing `from` up to the first
/// later line that starts with `until`.
fn section<'a>(text: &'a str, from: &str, until: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} found"));
    let rest = &text[start..];
    let end = rest[1..]
        .find(&format!("\n{until}"))
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

fn missing(text: &str) -> Vec<&'static str> {
    Error::DOCUMENTED_ERRNOS
        .iter()
        .map(|&(_, name)| name)
        .filter(|name| !text.contains(name))
        .collect()
}

#[test]
fn the_header_documents_every_errno() {
    let header = read("include/freezefs.h");
    let docs = section(&header, "Freezes, thaws or queries", "int freezefs(");
    assert_eq!(
        missing(docs),
        Vec::<&str>::new(),
        "freezefs() in freezefs.h"
    );
}

#[test]
fn the_errors_section_of_freezefs_3_lists_every_errno() {
    let page = read("man/freezefs.3");
    let errors = section(&page, ".SH ERRORS", ".SH");
    assert_eq!(missing(errors), Vec::<&str>::new(), "ERRORS of freezefs(3)");
}

#[test]
fn the_readme_errno_table_lists_every_errno() {
    let readme = read("README.md");
    let table = section(&readme, "| condition | errno |", "\n");
    assert_eq!(
        missing(table),
        Vec::<&str>::new(),
        "the README's errno table"
    );
}
