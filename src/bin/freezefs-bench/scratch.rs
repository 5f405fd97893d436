//! Scratch loop-mounted filesystems for the benchmark, and a guard that
//! thaws the machine's own filesystems should anything freeze them.
//!
//! The raw ioctls it measures freezefs against, and the bind mounts, are
//! the library's own system-call wrappers: no unsafe here.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub(crate) use freezefs::ioctl_numbers::{FIFREEZE, FITHAW, bind_mount, raw_ioctl};

pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Thaws /, /usr, /var, /tmp, /run every 50 ms for the life of the process.
pub(crate) fn start_system_guard() {
    let files: Vec<File> = ["/", "/usr", "/var", "/tmp", "/run"]
        .iter()
        .filter_map(|p| File::open(p).ok())
        .collect();
    std::thread::spawn(move || {
        loop {
            for f in &files {
                if raw_ioctl(f, FITHAW).is_ok() {
                    eprintln!("freezefs-bench: a system filesystem was frozen; thawed it");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// A loop-mounted ext4 image under `dir`, thawed and unmounted on drop.
pub(crate) struct ScratchFs {
    pub mnt: PathBuf,
    root: File,
}

impl ScratchFs {
    pub(crate) fn new(dir: &Path, name: &str, mib: u64) -> ScratchFs {
        let image = dir.join(format!("{name}.img"));
        let mnt = dir.join(name);
        std::fs::create_dir_all(&mnt).unwrap();
        File::create(&image).unwrap().set_len(mib << 20).unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mnt));
        let root = File::open(&mnt).unwrap();
        ScratchFs { mnt, root }
    }

    pub(crate) fn root(&self) -> &File {
        &self.root
    }

    /// Leaves `mib` MiB of dirty page cache in the filesystem.
    pub(crate) fn dirty(&self, mib: u64) {
        let chunk = vec![0xa5u8; 1 << 20];
        let mut file = File::create(self.mnt.join("dirty")).unwrap();
        for _ in 0..mib {
            std::io::Write::write_all(&mut file, &chunk).unwrap();
        }
    }

    /// Removes the dirty file and writes everything back.
    pub(crate) fn settle(&self) {
        let _ = std::fs::remove_file(self.mnt.join("dirty"));
        let _ = rustix::fs::syncfs(&self.root);
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        // Never unmount before thawing.
        let _ = raw_ioctl(&self.root, FITHAW);
        for _ in 0..40 {
            if Command::new("umount")
                .arg(&self.mnt)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}
