//! Real filesystems for tests: loop-mounted images made per test, thawed,
//! unmounted and detached on drop (also when the test panics), and a guard
//! that thaws the system's own filesystems if anything ever freezes them.
#![allow(dead_code)]
// The harness's own raw system calls (the kernel's FIFREEZE probe, mkdtemp).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use freezefs::Freezer;

use freezefs::ioctl_numbers::{FIFREEZE, FITHAW};

/// Set by the guard when it had to thaw a system filesystem: a bug of ours.
static SYSTEM_WAS_FROZEN: AtomicBool = AtomicBool::new(false);

fn ioctl(file: &File, request: u32) -> std::io::Result<()> {
    // SAFETY: FIFREEZE/FITHAW take no argument memory; the fd is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// FITHAW through an open file of the test's own.
pub(crate) fn fithaw(file: &File) -> std::io::Result<()> {
    ioctl(file, FITHAW)
}

/// Thaws `/` and the filesystems of `/usr`, `/var`, `/tmp`, `/run` every 50 ms
/// for the life of the test process. Never guards a scratch filesystem.
pub(crate) fn start_system_guard() {
    static GUARD: Once = Once::new();
    GUARD.call_once(|| {
        let files: Vec<(String, File)> = ["/", "/usr", "/var", "/tmp", "/run"]
            .iter()
            .filter_map(|p| File::open(p).ok().map(|f| (p.to_string(), f)))
            .collect();
        thread::Builder::new()
            .name("system-thaw-guard".into())
            .spawn(move || {
                loop {
                    for (path, file) in &files {
                        if ioctl(file, FITHAW).is_ok() {
                            SYSTEM_WAS_FROZEN.store(true, Ordering::SeqCst);
                            eprintln!("system-thaw-guard: {path} was frozen; thawed it");
                        }
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
            .expect("spawn guard");
    });
}

/// The cgroups that holders and wardens no service manager started move
/// into, at the top of each cgroup v2 hierarchy (src/os/cgroup.rs).
const KEEPER_CGROUPS: [&str; 2] = ["freezefs.holder", "freezefs.warden"];

/// The keeper cgroups that exist on this machine now.
fn keeper_cgroups() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (at, fs_type) = (fields.nth(1)?, fields.next()?);
            (fs_type == "cgroup2").then(|| PathBuf::from(at))
        })
        .flat_map(|root| KEEPER_CGROUPS.map(|name| root.join(name)))
        .filter(|cgroup| cgroup.is_dir())
        .collect()
}

/// The keeper cgroups there before this test process started any keeper.
static KEEPER_CGROUPS_BEFORE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes, when this test process exits (passed or failed), the keeper
/// cgroups its keepers made, once their last keeper has exited (up to
/// 10 s each); those that were there before are not the tests' to remove.
/// Called before the first keeper can start.
fn remove_keeper_cgroups_at_exit() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        *KEEPER_CGROUPS_BEFORE.lock().unwrap() = keeper_cgroups();
        extern "C" fn at_exit() {
            let before = KEEPER_CGROUPS_BEFORE
                .lock()
                .map(|b| b.clone())
                .unwrap_or_default();
            for cgroup in keeper_cgroups().into_iter().filter(|c| !before.contains(c)) {
                let deadline = Instant::now() + Duration::from_secs(10);
                // Busy while a keeper is still in it; gone is done.
                while let Err(e) = std::fs::remove_dir(&cgroup) {
                    if e.kind() == std::io::ErrorKind::NotFound || Instant::now() >= deadline {
                        break;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
        // SAFETY: `at_exit` is a plain function that neither unwinds nor
        // calls exit; libc runs it once, when the process exits.
        let registered = unsafe { libc::atexit(at_exit) };
        assert_eq!(registered, 0, "atexit");
    });
}

/// Panics if the guard ever had to thaw a system filesystem.
pub(crate) fn assert_system_never_frozen() {
    assert!(
        !SYSTEM_WAS_FROZEN.load(Ordering::SeqCst),
        "a system filesystem was frozen during the tests"
    );
}

/// The stdout of a command that must have succeeded; else a panic that
/// says `what` and shows all it printed.
pub(crate) fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the real-filesystem tests must run as root (loop mounts, FIFREEZE); they do not skip"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ext4,
    Xfs,
    Btrfs,
    Vfat,
    Squashfs,
    Tmpfs,
    Ramfs,
}

impl Kind {
    pub(crate) const FREEZABLE: [Kind; 3] = [Kind::Ext4, Kind::Xfs, Kind::Btrfs];
    /// Filesystems Linux cannot freeze that this kernel can mount: vfat is
    /// left out (loudly) on a kernel built without it.
    pub(crate) fn unfreezable() -> Vec<Kind> {
        let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        let mut kinds = vec![Kind::Squashfs, Kind::Tmpfs, Kind::Ramfs];
        if known.split_whitespace().any(|f| f == "vfat") {
            kinds.push(Kind::Vfat);
        } else {
            eprintln!(
                "NOTE: this kernel has no vfat driver; squashfs stands in as the block-device case"
            );
        }
        kinds
    }

    fn image_mib(self) -> Option<u64> {
        match self {
            Kind::Ext4 => Some(64),
            Kind::Xfs => Some(320),
            Kind::Btrfs => Some(160),
            Kind::Vfat => Some(32),
            Kind::Squashfs => Some(0),
            Kind::Tmpfs | Kind::Ramfs => None,
        }
    }

    fn mkfs(self, image: &Path) -> Command {
        let mut cmd = match self {
            Kind::Ext4 => Command::new("mkfs.ext4"),
            Kind::Xfs => Command::new("mkfs.xfs"),
            Kind::Btrfs => Command::new("mkfs.btrfs"),
            Kind::Vfat => Command::new("mkfs.vfat"),
            Kind::Squashfs => {
                let mut cmd = Command::new("mksquashfs");
                cmd.arg("/etc/hostname")
                    .arg(image)
                    .args(["-noappend", "-quiet"]);
                return cmd;
            }
            Kind::Tmpfs | Kind::Ramfs => unreachable!(),
        };
        match self {
            Kind::Ext4 => cmd.args(["-q", "-F"]),
            Kind::Xfs => cmd.args(["-q", "-f"]),
            Kind::Btrfs => cmd.args(["-q", "-f"]),
            _ => &mut cmd,
        };
        cmd.arg(image);
        cmd
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Ext4 => "ext4",
            Kind::Xfs => "xfs",
            Kind::Btrfs => "btrfs",
            Kind::Vfat => "vfat",
            Kind::Squashfs => "squashfs",
            Kind::Tmpfs => "tmpfs",
            Kind::Ramfs => "ramfs",
        }
    }
}

/// One test per freezable filesystem kind.
macro_rules! on_ext4_xfs_btrfs {
    ($(#[$meta:meta])* fn $name:ident($kind:ident) $body:block) => {
        mod $name {
            use super::*;
            fn check($kind: Kind) $body
            #[test] fn ext4() { check(Kind::Ext4) }
            #[test] fn xfs() { check(Kind::Xfs) }
            #[test] fn btrfs() { check(Kind::Btrfs) }
        }
    };
}
pub(crate) use on_ext4_xfs_btrfs;

/// A scratch filesystem mounted at `mnt`, inside its own temporary directory
/// that also holds its own state directory and sysconfigtab.
pub(crate) struct Scratch {
    pub kind: Kind,
    pub dir: PathBuf,
    pub mnt: PathBuf,
    pub image: Option<PathBuf>,
    /// Extra mounts (bind, subvolume) to unmount first, innermost last added.
    extra: Vec<PathBuf>,
    /// Set once the test unmounted it itself.
    unmounted: bool,
    /// Open on the mount root from the start: thaws without a path lookup.
    root: Option<File>,
}

pub(crate) fn mkdtemp(prefix: &str) -> PathBuf {
    let template = CString::new(format!("/tmp/{prefix}.XXXXXX")).unwrap();
    let mut bytes = template.into_bytes_with_nul();
    // SAFETY: bytes is a writable NUL-terminated template ending in XXXXXX.
    let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    assert!(!p.is_null(), "mkdtemp: {}", std::io::Error::last_os_error());
    bytes.pop();
    PathBuf::from(OsStr::from_bytes(&bytes))
}

impl Scratch {
    pub(crate) fn new(kind: Kind) -> Scratch {
        Scratch::sized(kind, kind.image_mib())
    }

    /// A scratch of `kind` with an image of `mib` MiB (`None`: no image).
    pub(crate) fn sized(kind: Kind, mib: Option<u64>) -> Scratch {
        require_root();
        start_system_guard();
        remove_keeper_cgroups_at_exit();
        let dir = mkdtemp(&format!("freezefs-test-{}", kind.name()));
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut scratch = Scratch {
            kind,
            dir: dir.clone(),
            mnt: mnt.clone(),
            image: None,
            extra: Vec::new(),
            unmounted: false,
            root: None,
        };
        match mib {
            Some(mib) => {
                let image = dir.join("image");
                if mib > 0 {
                    File::create(&image).unwrap().set_len(mib << 20).unwrap();
                }
                run(&mut kind.mkfs(&image));
                run(Command::new("mount")
                    .arg("-o")
                    .arg("loop")
                    .arg(&image)
                    .arg(&mnt));
                scratch.image = Some(image);
            }
            None => {
                run(Command::new("mount")
                    .args(["-t", kind.name(), "none"])
                    .arg(&mnt));
            }
        }
        scratch.root = Some(File::open(&mnt).unwrap());
        scratch
    }

    /// Every mount this scratch made: its own and the extra ones.
    pub(crate) fn mounts(&self) -> Vec<&Path> {
        std::iter::once(self.mnt.as_path())
            .chain(self.extra.iter().map(PathBuf::as_path))
            .collect()
    }

    /// A freezer whose state directory and sysconfigtab are this scratch's own.
    pub(crate) fn freezer(&self) -> Freezer {
        Freezer::new()
            .with_state_dir(self.state_dir())
            .with_sysconfigtab(self.sysconfigtab())
            .with_holder(holder_exe())
    }

    /// The superblock's device, as the library names it.
    pub(crate) fn device(&self) -> freezefs::Device {
        self.freezer().status(&self.mnt).unwrap().device
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub(crate) fn sysconfigtab(&self) -> PathBuf {
        self.dir.join("sysconfigtab")
    }

    /// Rewrites fields of the superblock's live record (`key value` lines),
    /// as freezefs writes a record: a whole new file renamed over it. A
    /// field the record does not have fails the test, never passes it by.
    pub(crate) fn rewrite_record(&self, fields: &[(&str, String)]) {
        let record = self.state_dir().join(format!("sb.{}", self.device()));
        let old = std::fs::read_to_string(&record).unwrap();
        let key_of = |line: &str| {
            line.split_once(' ')
                .map_or(line, |(key, _)| key)
                .to_string()
        };
        for (key, _) in fields {
            assert!(
                old.lines().any(|line| key_of(line) == *key),
                "the record has no {key} line: {old}"
            );
        }
        let text: String = old
            .lines()
            .map(
                |line| match fields.iter().find(|(k, _)| *k == key_of(line)) {
                    Some((k, value)) => format!("{k} {value}\n"),
                    None => format!("{line}\n"),
                },
            )
            .collect();
        let tmp = self.state_dir().join(".tmp.test-rewrite");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &record).unwrap();
    }

    pub(crate) fn record_text(&self) -> Option<String> {
        self.records().into_iter().next()
    }

    /// Every live record in the state directory (one may be removed
    /// between the listing and the read: it is left out).
    pub(crate) fn records(&self) -> Vec<String> {
        std::fs::read_dir(self.state_dir())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("sb."))
                    .filter_map(|r| std::fs::read_to_string(r.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bind-mounts the scratch mount at `dir/name`.
    pub(crate) fn bind(&mut self, name: &str) -> PathBuf {
        let at = self.dir.join(name);
        std::fs::create_dir_all(&at).unwrap();
        run(Command::new("mount").arg("--bind").arg(&self.mnt).arg(&at));
        self.extra.push(at.clone());
        at
    }

    /// Takes a mount the test made itself into this scratch's care.
    pub(crate) fn adopt_mount(&mut self, at: PathBuf) {
        self.extra.push(at);
    }

    /// Mounts something of the caller's at `dir/name`; unmounted on drop.
    pub(crate) fn mount_extra(&mut self, name: &str, args: &[&str]) -> PathBuf {
        let at = self.dir.join(name);
        std::fs::create_dir_all(&at).unwrap();
        run(Command::new("mount").args(args).arg(&at));
        self.extra.push(at.clone());
        at
    }

    /// FIFREEZE straight to the kernel, as another tool (fsfreeze,
    /// qemu-guest-agent) does.
    pub(crate) fn other_tool_freezes(&self) -> std::io::Result<()> {
        ioctl(self.root.as_ref().unwrap(), FIFREEZE)
    }

    /// FITHAW straight to the kernel, as another tool does.
    pub(crate) fn other_tool_thaws(&self) -> std::io::Result<()> {
        ioctl(self.root.as_ref().unwrap(), FITHAW)
    }

    /// The kernel's own answer (see [`kernel_frozen`]).
    pub(crate) fn kernel_frozen(&self) -> bool {
        kernel_frozen(self.root.as_ref().unwrap())
    }

    /// Waits at most `limit` for a freeze another process is making to be
    /// on record as frozen, then asks the kernel. Never polls the kernel
    /// before: its probe is a FIFREEZE of its own, and one that meets the
    /// other process's FIFREEZE makes that freeze fail with EBUSY.
    pub(crate) fn frozen_by_other_process_within(&self, limit: Duration) -> bool {
        let recorded = wait_until(limit, Duration::from_millis(10), || {
            self.record_text()
                .is_some_and(|text| text.lines().any(|l| l == "phase frozen"))
        });
        recorded && self.kernel_frozen()
    }

    /// Starts a write into the filesystem and reports whether it finished
    /// within `wait`. A write still blocked goes on in its thread and ends
    /// when the filesystem is thawed (drop thaws it).
    pub(crate) fn write_completes_within(&self, wait: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        let path = self.mnt.join(format!("w.{}", rand_suffix()));
        thread::spawn(move || {
            let ok = std::fs::write(&path, b"written while we watched").is_ok();
            let _ = tx.send(ok);
        });
        matches!(rx.recv_timeout(wait), Ok(true))
    }

    /// Like [`write_completes_within`], but returns when the write finished.
    pub(crate) fn write_in_background(&self) -> mpsc::Receiver<Instant> {
        let (tx, rx) = mpsc::channel();
        let path = self.mnt.join(format!("w.{}", rand_suffix()));
        thread::spawn(move || {
            std::fs::write(&path, b"x").unwrap();
            let _ = tx.send(Instant::now());
        });
        rx
    }

    pub(crate) fn read_completes_within(&self, wait: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        let mnt = self.mnt.clone();
        thread::spawn(move || {
            let ok = std::fs::read_dir(&mnt).map(|d| d.count()).is_ok();
            let _ = tx.send(ok);
        });
        matches!(rx.recv_timeout(wait), Ok(true))
    }

    /// Thaws and unmounts now (to check the image), leaving the directory
    /// for drop to remove.
    pub(crate) fn unmount(&mut self) {
        self.thaw_everything();
        self.root = None;
        for at in self.extra.drain(..).rev() {
            umount(&at);
        }
        umount(&self.mnt);
        self.unmounted = true;
    }

    fn thaw_everything(&self) {
        if let Some(root) = &self.root {
            let _ = self.freezer().thaw(&self.mnt);
            let _ = ioctl(root, FITHAW);
        }
    }
}

/// The kernel's own answer, for tests only: FIFREEZE says EBUSY when the
/// filesystem `root` lies on is frozen; when it was not, the probe thaws it
/// again.
pub(crate) fn kernel_frozen(root: &File) -> bool {
    match ioctl(root, FIFREEZE) {
        Ok(()) => {
            ioctl(root, FITHAW).unwrap();
            false
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => true,
        Err(e) => panic!("FIFREEZE probe: {e}"),
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// Unmounts, retrying while it is busy (a holder letting go), then lazily.
pub(crate) fn umount(path: &Path) {
    for _ in 0..40 {
        let status = Command::new("umount")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status();
        if matches!(status, Ok(s) if s.success()) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    // Still busy (a blocked helper finishing): detach it; the kernel frees
    // the loop device when the last user goes.
    let _ = Command::new("umount").arg("-l").arg(path).status();
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Never unmount before thawing: a frozen, unmounted filesystem
        // cannot be reached again.
        self.thaw_everything();
        self.root = None;
        for at in self.extra.drain(..).rev() {
            umount(&at);
        }
        if !self.unmounted {
            umount(&self.mnt);
        }
        // A holder letting go may still add or remove its socket in the
        // state directory meanwhile, failing one removal.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        if !thread::panicking() {
            assert_system_never_frozen();
        }
    }
}

/// The filesystem's own checker, read-only, on an image copied while frozen.
pub(crate) fn check_image(kind: Kind, image: &Path) {
    let mut cmd = match kind {
        Kind::Ext4 => {
            let mut c = Command::new("fsck.ext4");
            c.arg("-fn");
            c
        }
        Kind::Xfs => {
            // A frozen XFS keeps its log: replay it, as mounting a snapshot
            // does, then check.
            let replay = image.with_extension("replay");
            std::fs::create_dir_all(&replay).unwrap();
            // nouuid: the original may still be mounted, under the same UUID.
            run(Command::new("mount")
                .args(["-o", "loop,nouuid"])
                .arg(image)
                .arg(&replay));
            umount(&replay);
            let mut c = Command::new("xfs_repair");
            c.arg("-n").arg("-f");
            c
        }
        Kind::Btrfs => {
            let mut c = Command::new("btrfs");
            c.args(["check", "--readonly"]);
            c
        }
        other => panic!("no checker for {other:?}"),
    };
    run(cmd.arg(image));
}

/// A syslog socket of the test's own.
pub(crate) struct Syslog {
    pub(crate) socket: UnixDatagram,
    pub(crate) path: PathBuf,
}

impl Syslog {
    pub(crate) fn new(dir: &Path) -> Syslog {
        let path = dir.join("log");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        Syslog { socket, path }
    }

    /// Every message until 300 ms pass in silence.
    pub(crate) fn drain(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let mut all = Vec::new();
        while let Ok(n) = self.socket.recv(&mut buf) {
            all.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        all
    }
}

pub(crate) fn event<'a>(messages: &'a [String], name: &str) -> &'a String {
    messages
        .iter()
        .find(|m| m.contains(&format!("]: {name} ")))
        .unwrap_or_else(|| panic!("no {name} in {messages:#?}"))
}

/// Sends SIGTERM (no-op if the process is gone).
pub(crate) fn sigterm(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Sends SIGKILL (no-op if the process is gone).
pub(crate) fn sigkill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Alive and not a zombie.
pub(crate) fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|r| r.1.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The running holders serving this scratch's state directory.
pub(crate) fn live_holders(fs: &Scratch) -> Vec<u32> {
    live_helpers(fs, "--serve")
}

/// The running wardens of this scratch's state directory.
pub(crate) fn live_wardens(fs: &Scratch) -> Vec<u32> {
    live_helpers(fs, "--warden")
}

/// The running `freezefs-holder ROLE` processes of this scratch's state
/// directory.
fn live_helpers(fs: &Scratch, role: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .arg("-f")
        .arg(format!(
            "freezefs-holder {role} {}",
            fs.state_dir().display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| running(p))
        .collect()
}

/// Starts `c-tests/freeze_then_write` through `configure` (which sets its
/// environment), and returns once it has frozen `fs` with `timeout` and is
/// about to block writing to it.
pub(crate) fn frozen_writer(
    fs: &Scratch,
    timeout: &str,
    configure: impl FnOnce(&mut Command) -> Command,
) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(program("freeze_then_write"));
    cmd.arg(&fs.mnt)
        .arg(timeout)
        .stdout(std::process::Stdio::piped());
    let mut child = configure(&mut cmd).spawn().unwrap();
    let mut said = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said.trim(), "frozen");
    child
}

/// The holder executable cargo built for these tests: this package's own,
/// or, for another workspace crate's tests (freezefs-group), the one
/// `cargo test --workspace` built beside them in target/<profile>.
/// A command of the freezefs-cli crate (`freezefs`, `thawfs`), built beside
/// these tests by `cargo test --workspace` (scripts/test), which builds a
/// package's binaries for its own integration tests (cli/tests/).
fn command_exe(name: &'static str, cell: &'static std::sync::OnceLock<String>) -> &'static str {
    cell.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let command = profile_dir.join(name);
        assert!(
            command.exists(),
            "{} is not built: run the tests with cargo test --workspace (or cargo build -p freezefs-cli first)",
            command.display()
        );
        command.to_string_lossy().into_owned()
    })
}

/// `freezefs`, as built for these tests.
pub(crate) fn freezefs_exe() -> &'static str {
    static EXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    command_exe("freezefs", &EXE)
}

/// `thawfs`, as built for these tests.
pub(crate) fn thawfs_exe() -> &'static str {
    static EXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    command_exe("thawfs", &EXE)
}

pub(crate) fn holder_exe() -> &'static str {
    match option_env!("CARGO_BIN_EXE_freezefs-holder") {
        Some(exe) => exe,
        None => {
            static EXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            EXE.get_or_init(|| {
                let exe = std::env::current_exe().unwrap();
                let profile_dir = exe.parent().and_then(Path::parent).unwrap();
                let holder = profile_dir.join("freezefs-holder");
                assert!(
                    holder.exists(),
                    "no {}: build the workspace first (cargo test --workspace)",
                    holder.display()
                );
                holder.to_string_lossy().into_owned()
            })
        }
    }
}

/// Waits until `cond` holds, polling every `step`, at most `limit`.
pub(crate) fn wait_until(limit: Duration, step: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(step);
    }
}

/// Writes a sysconfigtab with a `vfs:` stanza setting the default timeout.
pub(crate) fn write_sysconfigtab(path: &Path, value: &str) {
    std::fs::write(
        path,
        format!("# test\ngeneric:\n\tmemberid = 1\n\nvfs:\n\tfreezefs_default_timeout = {value}\n"),
    )
    .unwrap();
}

// C programs from c-tests/, built against the header and the fresh library.

pub(crate) fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>/deps, where cargo test builds libfreezefs.so and .a
/// (it does not copy them up to target/<profile>, which may hold stale ones).
pub(crate) fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_path_buf();
    assert!(
        dir.join("libfreezefs.so").exists(),
        "no libfreezefs.so in {}",
        dir.display()
    );
    dir
}

/// Every symbol libfreezefs.so exports, sorted: the C API and nothing else.
pub(crate) const C_API: [&str; 7] = [
    "freezefs",
    "freezefs_all",
    "freezefs_last_freeze",
    "freezefs_list",
    "freezefs_reset_timeout",
    "freezefs_status",
    "thawfs_all",
];

/// How every C file of the project is compiled.
pub(crate) const STRICT_C: [&str; 5] = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];

pub(crate) fn cc(args: &[&str]) {
    run(Command::new("cc").args(args));
}

/// Compiles c-tests/<name>.c once per test process, strictly.
pub(crate) fn program(name: &str) -> PathBuf {
    build_c("c-tests", name)
}

/// Compiles examples/<name>.c once per test process, strictly.
pub(crate) fn example(name: &str) -> PathBuf {
    build_c("examples", name)
}

fn build_c(dir: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let lib = lib_dir();
    let out_dir = lib.join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(name);
    let src = crate_dir().join(format!("{dir}/{name}.c"));
    cc(&[
        &STRICT_C[..],
        &[
            "-pthread",
            "-I",
            crate_dir().join("include").to_str().unwrap(),
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-L",
            lib.to_str().unwrap(),
            // DT_RPATH, not RUNPATH: cargo test's LD_LIBRARY_PATH names
            // target/<profile>, which may hold a stale libfreezefs.so.
            "-Wl,--disable-new-dtags",
            &format!("-Wl,-rpath,{}", lib.display()),
            "-lfreezefs",
        ],
    ]
    .concat());
    built.insert(name.to_string(), out.clone());
    out
}

/// The shim, freshly built (cargo test does not rebuild a cdylib-only
/// workspace member by itself), in a build directory of its own: a build
/// of it into the tests' own replaces libfreezefs.so there while other
/// tests' C programs load it.
pub(crate) fn shim() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = crate_dir().join("target/shim-test");
            let out = Command::new(env!("CARGO"))
                .args(["build", "-p", "freezefs-preload", "--quiet"])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(crate_dir())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = target.join("debug/libfreezefs_preload.so");
            assert!(path.exists(), "{}", path.display());
            path
        })
        .clone()
}

pub(crate) fn under_shim(
    fs: &Scratch,
    tool: &str,
    args: &[&std::ffi::OsStr],
    timeout: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    let mut cmd = with_env(&mut cmd, fs);
    cmd.env("LD_PRELOAD", shim());
    if let Some(t) = timeout {
        cmd.env("FREEZEFS_TIMEOUT", t);
    }
    cmd.output().unwrap()
}

pub(crate) fn with_env(cmd: &mut Command, fs: &Scratch) -> Command {
    let mut c = std::mem::replace(cmd, Command::new("true"));
    c.env_remove("LD_LIBRARY_PATH")
        .env("FREEZEFS_RUNDIR", fs.state_dir())
        .env("FREEZEFS_HOLDER", holder_exe())
        .env("FREEZEFS_SYSCONFIGTAB", fs.sysconfigtab());
    c
}

/// `program` (a build product) run by setpriv as uid and gid 65534, with
/// setpriv's options `caps` first, in `fs`'s environment. It runs a copy
/// in `fs.dir/nobody-bin`, with copies of libfreezefs.so and the holder:
/// a checkout under /root (0700) is closed to that uid. `fs.dir` is opened
/// to it (0755).
pub(crate) fn as_nobody(fs: &Scratch, caps: &[&str], program: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let open = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(&fs.dir, 0o755);
    let bin = fs.dir.join("nobody-bin");
    std::fs::create_dir_all(&bin).unwrap();
    open(&bin, 0o755);
    let copy = |from: &Path| {
        let to = bin.join(from.file_name().unwrap());
        if !to.exists() {
            std::fs::copy(from, &to).unwrap();
            open(&to, 0o755);
        }
        to
    };
    copy(&lib_dir().join("libfreezefs.so"));
    let holder = copy(Path::new(holder_exe()));
    let exe = copy(program);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(caps)
        .arg(exe);
    let mut cmd = with_env(&mut cmd, fs);
    cmd.env("LD_LIBRARY_PATH", &bin)
        .env("FREEZEFS_HOLDER", holder);
    cmd
}

/// Runs fzctl (one freezefs() call) and returns "rc=.. errno=..".
pub(crate) fn fzctl(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(crate) fn fzctl_cmd(fs: &Scratch, flags: &str, path: &Path, timeout: &str) -> Command {
    let mut cmd = Command::new(program("fzctl"));
    cmd.arg(flags).arg(path).arg(timeout);
    with_env(&mut cmd, fs)
}
