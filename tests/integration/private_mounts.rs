//! A mount namespace of a test's own, for the tests that must name `/`,
//! `/usr` or `/var`, or run a tool that acts on every filesystem it sees
//! (qemu-guest-agent's thaw). Only the system's virtual filesystems and the
//! test's own scratch mounts stay mounted in it: every other mount, other
//! tests' freezes included, is detached. The scratch images then stand in
//! for the protected names: mounted over `/usr` or `/var`, or made the root
//! of the namespace's processes. The machine's own `/`, `/usr` and `/var` are
//! never named.
//!
//! The namespace lives in a sleeping process; commands enter it with
//! nsenter. It ends when the last process in it does (dropping this kills
//! the sleepers; a holder started inside lingers until its freezes end).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use crate::support::{Scratch, crate_dir, holder_exe, run, shim, wait_until, with_env};

/// The mounts a namespace keeps besides the test's own: the virtual
/// filesystems programs need, none of them a block filesystem.
const SYSTEM_KEPT: [&str; 4] = ["/proc", "/sys", "/dev", "/dev/pts"];

/// The program directories of `/usr`, put back over a scratch `/usr` so
/// that programs still start in the namespace.
const USR_PROGRAM_DIRS: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

pub(crate) struct PrivateMounts {
    /// Holds the namespace.
    sleeper: Child,
    /// A sleeper whose root is the scratch chosen as `/`, if any.
    rooted: Option<Child>,
    /// That scratch's mount point.
    root: Option<PathBuf>,
}

impl PrivateMounts {
    /// A private namespace keeping only `/`, the virtual filesystems and
    /// the scratch mounts in `keep`.
    pub(crate) fn new(keep: &[&Scratch]) -> PrivateMounts {
        let sleeper = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let ns = PrivateMounts {
            sleeper,
            rooted: None,
            root: None,
        };
        let kept: Vec<&Path> = keep.iter().flat_map(|fs| fs.mounts()).collect();
        ns.wait_until_entered();
        ns.detach_all_but(&kept);
        ns
    }

    /// The namespace's mount table from its own view.
    pub(crate) fn mount_points(&self) -> Vec<PathBuf> {
        let pid = self.rooted.as_ref().unwrap_or(&self.sleeper).id();
        let table = std::fs::read(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        freezefs::fuzzing::mountinfo(&table)
            .into_iter()
            .map(|(mount_point, _)| PathBuf::from(OsStr::from_bytes(&mount_point)))
            .collect()
    }

    fn wait_until_entered(&self) {
        let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let theirs = format!("/proc/{}/ns/mnt", self.sleeper.id());
        let entered = wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
            std::fs::read_link(&theirs).is_ok_and(|ns| ns != own)
                && std::fs::read_to_string(format!("/proc/{}/comm", self.sleeper.id()))
                    .is_ok_and(|comm| comm.trim() == "sleep")
        });
        assert!(entered, "unshare -m did not make a namespace");
    }

    fn detach_all_but(&self, kept: &[&Path]) {
        let keep = |p: &Path| {
            p == Path::new("/")
                || SYSTEM_KEPT.iter().any(|k| p == Path::new(k))
                || kept.contains(&p)
        };
        let foreign = || -> Vec<PathBuf> {
            let mut found: Vec<PathBuf> = self
                .mount_points()
                .into_iter()
                .filter(|p| !keep(p))
                .collect();
            found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            found
        };
        // Deepest first; stacked mounts take a round each, and a mount under
        // one already detached is gone with it (its umount fails).
        for _ in 0..8 {
            let doomed = foreign();
            if doomed.is_empty() {
                return;
            }
            let _ = self
                .setup("umount")
                .arg("-l")
                .args(&doomed)
                .stderr(Stdio::null())
                .status();
        }
        panic!("still mounted in the namespace: {:?}", foreign());
    }

    /// A command run inside the namespace (and inside the scratch root,
    /// after [`PrivateMounts::root_in`]).
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        match &self.rooted {
            Some(rooted) => cmd.args(["-t", &rooted.id().to_string(), "-m", "-r", "-w"]),
            None => cmd.args(["-t", &self.sleeper.id().to_string(), "-m"]),
        };
        cmd.arg("--").arg(program);
        cmd
    }

    /// A tool run under the shim inside the namespace, with `fs`'s state
    /// directory, sysconfigtab and holder.
    pub(crate) fn under_shim(&self, fs: &Scratch, tool: &str, timeout: Option<&str>) -> Command {
        let mut cmd = self.command("env");
        if let Some(t) = timeout {
            cmd.arg(format!("FREEZEFS_TIMEOUT={t}"));
        }
        cmd.arg(format!("LD_PRELOAD={}", shim().display()))
            .arg(tool);
        with_env(&mut cmd, fs)
    }

    /// Mounts `fs` over `name` (`/usr`, `/var`) in the namespace (in its
    /// scratch root, after [`PrivateMounts::root_in`]) and detaches it from
    /// its scratch path there. Over `/usr`, the real program directories are
    /// bound back inside it, so that programs still start: the scratch
    /// superblock is what `/usr` names.
    pub(crate) fn mount_over(&self, fs: &Scratch, name: &str) {
        if name == "/usr" {
            self.bind_programs_into(&fs.mnt);
        }
        // A checkout under /var or /usr (a clone in /var/tmp) stays visible:
        // the project's directory and the build's, bound in before `name` is
        // covered, at the same paths inside the scratch.
        for dir in self.build_dirs() {
            if let Ok(below) = dir.strip_prefix(name) {
                let inside = fs.mnt.join(below);
                std::fs::create_dir_all(&inside).unwrap();
                run(self.setup("mount").arg("--bind").arg(dir).arg(&inside));
            }
        }
        let at = match &self.root {
            Some(root) => root.join(name.trim_start_matches('/')),
            None => PathBuf::from(name),
        };
        std::fs::create_dir_all(&at).unwrap();
        run(self.setup("mount").arg("--rbind").arg(&fs.mnt).arg(&at));
        run(self.setup("umount").arg("-l").arg(&fs.mnt));
    }

    /// Whether `name` in the namespace lies on `fs`.
    pub(crate) fn names(&self, name: &str, fs: &Scratch) -> bool {
        use std::os::unix::fs::MetadataExt;
        let inside = run(self.command("stat").args(["-c", "%d", name]));
        let scratch = std::fs::metadata(&fs.mnt).unwrap().dev();
        inside.trim() == scratch.to_string()
    }

    /// The project's directory, and the build's when it lies elsewhere:
    /// what the commands run in the namespace need.
    fn build_dirs(&self) -> Vec<&'static Path> {
        let holder_dir = Path::new(holder_exe()).parent().unwrap();
        let mut dirs = vec![crate_dir()];
        if !holder_dir.starts_with(crate_dir()) {
            dirs.push(holder_dir);
        }
        dirs
    }

    /// Binds the real `/usr/bin`, `/usr/lib`, ... into `usr`.
    fn bind_programs_into(&self, usr: &Path) {
        for dir in USR_PROGRAM_DIRS {
            let real = Path::new("/usr").join(dir);
            if real.is_dir() {
                let inside = usr.join(dir);
                std::fs::create_dir_all(&inside).unwrap();
                run(self.setup("mount").arg("--bind").arg(&real).arg(&inside));
            }
        }
    }

    /// Makes `fs` the root (`/`) of every later [`PrivateMounts::command`]:
    /// a chroot into it. Programs, `/etc`, `/tmp` (the tests' state
    /// directories) and the project's directory (the shim, the holder) are
    /// bound in; `/usr` and `/var` stay directories of `fs`, so that naming
    /// them names `fs`, never the machine's own.
    pub(crate) fn root_in(&mut self, fs: &Scratch) {
        let root = fs.mnt.clone();
        self.bind_programs_into(&root.join("usr"));
        let mut binds: Vec<&Path> = vec![Path::new("/etc"), Path::new("/tmp")];
        binds.extend(self.build_dirs());
        for dir in binds {
            let inside = root.join(dir.strip_prefix("/").unwrap());
            std::fs::create_dir_all(&inside).unwrap();
            run(self.setup("mount").arg("--bind").arg(dir).arg(&inside));
        }
        for link in USR_PROGRAM_DIRS {
            let _ = std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link));
        }
        for dir in ["proc", "dev", "var"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        run(self
            .setup("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.join("proc")));
        run(self
            .setup("mount")
            .arg("--rbind")
            .arg("/dev")
            .arg(root.join("dev")));
        let rooted = self
            .setup("chroot")
            .arg(&root)
            .args(["sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("chroot");
        let pid = rooted.id();
        self.rooted = Some(rooted);
        self.root = Some(root);
        let entered = wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "sleep")
        });
        assert!(entered, "the chroot did not start");
    }

    /// A command in the namespace, outside its scratch root: for setting
    /// it up.
    fn setup(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.sleeper.id().to_string(), "-m", "--"])
            .arg(program);
        cmd
    }
}

impl Drop for PrivateMounts {
    fn drop(&mut self) {
        for child in self.rooted.iter_mut().chain([&mut self.sleeper]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
