//! Fuzzing the C entry points of the real libfreezefs.so (dlopen) with
//! arbitrary arguments: NULL, empty, huge, non-UTF-8, /proc and device
//! paths, protected paths, a scratch mount; every flag value; extreme
//! timeouts. Every call returns -1, 0 or 1 with a documented errno, and no
//! system filesystem is ever frozen. FREEZEFS_FUZZ_SECS seconds (default 60).
//!
//! The library reads its paths from the environment, which a process that
//! runs other tests at the same time must not change: the fuzzing runs in a
//! child of this test binary, started with that environment, while this
//! process owns the scratch mount.
#![allow(unsafe_code)] // dlopen, dlsym and the C calls themselves

use crate::support;

use std::ffi::{CString, c_char, c_int, c_ulong, c_void};
use std::time::{Duration, Instant};

use std::fs::File;
use std::process::Command;

use support::{Kind, Scratch, lib_dir};

/// Set in the child: the scratch mount point to fuzz against.
const CHILD_MOUNT_ENV: &str = "FREEZEFS_FUZZ_C_API_MOUNT";

use crate::fuzzkit;
use fuzzkit::{Rng, mutate, seconds};

type Freezefs = unsafe extern "C" fn(*mut c_char, c_ulong, c_int) -> c_int;
type Reset = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
type All = unsafe extern "C" fn(*const *mut c_char, c_int, c_int) -> c_int;
type ThawAll = unsafe extern "C" fn(*const *mut c_char, c_int) -> c_int;
type Status = unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int;

fn symbol<T: Copy>(lib: *mut c_void, name: &std::ffi::CStr) -> T {
    // SAFETY: dlsym on a library handle we opened; the name is NUL-terminated.
    let ptr = unsafe { libc::dlsym(lib, name.as_ptr()) };
    assert!(!ptr.is_null(), "{name:?} not exported");
    // SAFETY: T is the function pointer type of that exported symbol.
    unsafe { std::mem::transmute_copy(&ptr) }
}

fn documented(errno: c_int) -> bool {
    freezefs::Error::DOCUMENTED_ERRNOS
        .iter()
        .any(|&(value, _)| value == errno)
}

fn errno() -> c_int {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

#[test]
fn fuzz_the_c_entry_points() {
    if let Some(mnt) = std::env::var_os(CHILD_MOUNT_ENV) {
        return fuzz_in_this_process(std::path::Path::new(&mnt));
    }
    let fs = Scratch::new(Kind::Ext4);
    support::write_sysconfigtab(&fs.sysconfigtab(), "3");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fuzz_c_api::fuzz_the_c_entry_points",
            "--nocapture",
        ])
        .env(CHILD_MOUNT_ENV, &fs.mnt)
        .env("FREEZEFS_RUNDIR", fs.state_dir())
        .env("FREEZEFS_SYSCONFIGTAB", fs.sysconfigtab())
        .env("FREEZEFS_HOLDER", support::holder_exe())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the fuzzing child failed: {}\n{}{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    eprint!(
        "{}",
        stderr
            .lines()
            .filter(|l| l.starts_with("fuzz C API"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    assert!(
        !fs.kernel_frozen(),
        "the child left the scratch filesystem frozen"
    );
}

fn fuzz_in_this_process(mnt: &std::path::Path) {
    support::start_system_guard();
    let root = File::open(mnt).unwrap();
    let path = CString::new(
        lib_dir()
            .join("libfreezefs.so")
            .as_os_str()
            .as_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: loads our own library, which does nothing at load time.
    let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    assert!(!lib.is_null());
    let freezefs: Freezefs = symbol(lib, c"freezefs");
    let reset: Reset = symbol(lib, c"freezefs_reset_timeout");
    let all: All = symbol(lib, c"freezefs_all");
    let thaw_all: ThawAll = symbol(lib, c"thawfs_all");
    let status: Status = symbol(lib, c"freezefs_status");

    let mnt_bytes = mnt.as_os_str().as_encoded_bytes().to_vec();
    let mut pool: Vec<Vec<u8>> = vec![
        mnt_bytes.clone(),
        [&mnt_bytes[..], b"/"].concat(),
        [&mnt_bytes[..], b"/."].concat(),
        [&mnt_bytes[..], b"/../mnt"].concat(),
        b"".to_vec(),
        b"/".to_vec(),
        b"//usr/.".to_vec(),
        b"/usr/../var".to_vec(),
        b"/proc".to_vec(),
        b"/proc/self/fd/0".to_vec(),
        b"/proc/self/mountinfo".to_vec(),
        b"/dev/null".to_vec(),
        b"/dev/shm".to_vec(),
        b"/tmp/a\nb".to_vec(),
        b"/tmp/a\\040b".to_vec(),
        b"/tmp/\xff\xfe".to_vec(),
        vec![b'a'; 5000],
        [b"/".as_slice(), &vec![b'x'; 300]].concat(),
    ];
    let timeouts = [0, 1, 2, -1, c_int::MIN, c_int::MAX, 3600, -3600];
    let mut rng = Rng::new(0x5eed_c0de);
    let end = Instant::now() + Duration::from_secs(seconds());
    let (mut runs, mut frozen_by_us) = (0u64, 0u64);
    while Instant::now() < end {
        let raw = if rng.below(4) == 0 {
            let base = pool[rng.below(pool.len())].clone();
            mutate(&mut rng, &base, &pool)
        } else {
            pool[rng.below(pool.len())].clone()
        };
        let c_path =
            CString::new(raw.iter().copied().filter(|&b| b != 0).collect::<Vec<u8>>()).unwrap();
        let null = rng.below(16) == 0;
        let ptr = if null {
            std::ptr::null_mut()
        } else {
            c_path.as_ptr() as *mut c_char
        };
        let flags: c_ulong = match rng.below(4) {
            0 => rng.next() as c_ulong,
            1 => 1 << rng.below(64),
            _ => rng.below(4) as c_ulong,
        };
        let timeout = if rng.below(2) == 0 {
            timeouts[rng.below(timeouts.len())]
        } else {
            rng.next() as c_int
        };
        let mut buf = vec![0u8; 8192];
        let list = [ptr, std::ptr::null_mut()];
        let count = [0, 1, 2, -1, c_int::MAX][rng.below(5)].min(2);
        // SAFETY: every pointer passed is NULL or a NUL-terminated string
        // (or a buffer large enough for struct freezefs_status), and the
        // arrays hold at least `count` pointers.
        let (what, rc) = unsafe {
            match rng.below(5) {
                0 | 1 => ("freezefs", freezefs(ptr, flags, timeout)),
                2 => ("reset", reset(ptr, timeout)),
                3 => match rng.below(2) {
                    0 => ("freezefs_all", all(list.as_ptr(), count, timeout)),
                    _ => ("thawfs_all", thaw_all(list.as_ptr(), count)),
                },
                _ => ("status", status(ptr, buf.as_mut_ptr().cast())),
            }
        };
        let err = errno();
        runs += 1;
        assert!(
            (-1..=1).contains(&rc),
            "{what}({raw:?}, {flags:#x}, {timeout}) returned {rc}"
        );
        assert!(
            rc != -1 || documented(err),
            "{what}({raw:?}, {flags:#x}, {timeout}): errno {err}"
        );
        if support::kernel_frozen(&root) {
            frozen_by_us += 1;
            freezefs::thaw(mnt).unwrap();
        }
        if rng.below(512) == 0 && pool.len() < 64 {
            pool.push(raw);
        }
    }
    support::assert_system_never_frozen();
    eprintln!(
        "fuzz C API: {runs} calls in {} s ({frozen_by_us} froze the scratch filesystem), 0 crashes",
        seconds()
    );
    assert!(runs > 100);
}
