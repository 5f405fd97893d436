//! thawfs(8): thaw a filesystem, whoever froze it.

use freezefs_cli::messages as cli;

use std::path::PathBuf;

use freezefs::{Error, Status};

const HELP: &str = "\
Usage:
  thawfs mount_point...

Thaws each mount_point's filesystem, whoever froze it (freezefs, or another
tool such as fsfreeze -f); with several, every one that can be. Exit 0 when
it thawed them; 1 when one was not frozen, when its freeze had already ended
(its timeout, or another tool thawed it: a snapshot taken under it may be
inconsistent), when a hold hook ended while it was frozen (the filesystem is
thawed all the same), or a thaw failed; 2 for a usage error.

Options:
  -h, --help     show this help
  -V, --version  show the version";

fn main() {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut args = cli::args().into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => {
                println!("{HELP}");
                return;
            }
            Some("-V" | "--version") => {
                println!("{}", cli::version("thawfs"));
                return;
            }
            Some("--") => paths.extend(args.by_ref().map(PathBuf::from)),
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                std::process::exit(cli::usage_error("thawfs", &format!("unknown option '{s}'")));
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    match paths.as_slice() {
        [] => std::process::exit(cli::usage_error("thawfs", "no mount point given")),
        [path] => {
            if let Err(e) = freezefs::thaw(path) {
                let status = freezefs::status(path).ok();
                match (&e, status) {
                    (
                        Error::NotFrozen(_),
                        Some(Status {
                            last_freeze: Some(last),
                            ..
                        }),
                    ) => {
                        eprintln!("thawfs: {}: {}", path.display(), cli::ended_text(&last));
                    }
                    (Error::NotFrozen(_), Some(s)) if freezefs::never_freezable(&s.fs_type) => {
                        eprintln!(
                            "thawfs: {}: {} filesystems cannot be frozen; nothing to thaw",
                            path.display(),
                            s.fs_type
                        );
                    }
                    _ => cli::complain("thawfs", cli::Action::Thaw, path, &e),
                }
                std::process::exit(1);
            }
        }
        several => {
            if let Err(e) = freezefs::thaw_all(several) {
                eprintln!("thawfs: {}", cli::whole(cli::Action::Thaw, &e));
                std::process::exit(1);
            }
        }
    }
}
