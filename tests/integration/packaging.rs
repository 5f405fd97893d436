//! Installs like a C library (issue 6): make install, SONAME, exports,
//! pkg-config, the installed holder, man pages, syslog events.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::{C_API as API, Kind, Scratch, Syslog, crate_dir, event, mkdtemp, run, with_env};

/// What `make install` without DESTDIR printed.
static LIVE_INSTALL_OUTPUT: OnceLock<String> = OnceLock::new();

/// One release build, installed twice with the same PREFIX: once for real
/// (so that the installed library runs the installed holder), once under a
/// DESTDIR (the layout a package would ship).
fn installed() -> &'static (PathBuf, PathBuf) {
    static INSTALLED: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Under target/, replaced by each run: no litter in /tmp.
        let root = crate_dir().join("target/install-test");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let prefix = root.join("usr");
        let stage = root.join("stage");
        let build = crate_dir().join("target/make-test");
        for destdir in [None, Some(&stage)] {
            let mut make = Command::new("make");
            make.current_dir(crate_dir())
                .arg("install")
                .arg(format!("PREFIX={}", prefix.display()))
                .arg(format!("BUILD={}", build.display()))
                .env("CARGO", env!("CARGO"));
            if let Some(d) = destdir {
                make.arg(format!("DESTDIR={}", d.display()));
            }
            let said = run(&mut make);
            if destdir.is_none() {
                let _ = LIVE_INSTALL_OUTPUT.set(said);
            }
        }
        (prefix, stage)
    })
}

fn staged(rel: &str) -> PathBuf {
    let (prefix, stage) = installed();
    stage.join(prefix.strip_prefix("/").unwrap()).join(rel)
}

#[test]
fn make_install_puts_every_file_where_a_c_library_goes() {
    for rel in [
        "lib/libfreezefs.so.1.0.0",
        "lib/libfreezefs.so.1",
        "lib/libfreezefs.so",
        "lib/libfreezefs.a",
        "lib/libfreezefs_preload.so",
        "lib/pkgconfig/freezefs.pc",
        "lib/pkgconfig/freezefs-compat.pc",
        "include/freezefs.h",
        "include/freezefs/compat/sys/mount.h",
        "sbin/freezefs",
        "sbin/thawfs",
        "libexec/freezefs/freezefs-holder",
        "share/man/man3/freezefs.3",
        "share/man/man8/freezefs.8",
        "share/man/man8/thawfs.8",
        "share/doc/freezefs/examples/qemu-guest-agent.conf",
        "share/doc/freezefs/examples/hooks/50-postgresql",
        "share/doc/freezefs/examples/hold/50-mariadb",
        "share/doc/freezefs/examples/etcd-rbac.sh",
    ] {
        assert!(staged(rel).exists(), "{rel} not installed");
    }
    assert_eq!(
        std::fs::read_link(staged("lib/libfreezefs.so.1")).unwrap(),
        Path::new("libfreezefs.so.1.0.0")
    );
    assert_eq!(
        std::fs::read_link(staged("lib/libfreezefs.so")).unwrap(),
        Path::new("libfreezefs.so.1")
    );
    assert!(
        !staged("include/sys").exists(),
        "the compat header shadows <sys/mount.h>"
    );
}

#[test]
fn the_installed_qemu_guest_agent_drop_in_names_the_installed_shim() {
    let (prefix, _) = installed();
    let drop_in =
        std::fs::read_to_string(staged("share/doc/freezefs/examples/qemu-guest-agent.conf"))
            .unwrap();
    let wanted = format!(
        "Environment=LD_PRELOAD={}/lib/libfreezefs_preload.so\n",
        prefix.display()
    );
    assert!(drop_in.contains(&wanted), "{drop_in}");
    assert!(staged("lib/libfreezefs_preload.so").exists());
}

/// The README is for its reader: the two commands first, a way out of each
/// common trouble, and no words about where the project was written.
#[test]
fn the_readme_starts_with_the_two_commands_and_has_troubleshooting() {
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).unwrap();
    let first_block = readme.find("```sh").expect("no command block");
    let opening = &readme[first_block..];
    let block_end = opening.find("```\n").expect("the block ends");
    for command in ["scripts/demo", "scripts/test"] {
        assert!(
            opening.find(command).is_some_and(|at| at < block_end),
            "the first command block does not hold {command}"
        );
    }
    assert!(
        readme[..first_block].lines().count() < 40,
        "the two commands come late"
    );
    let trouble = readme
        .split("\n## ")
        .find(|s| s.starts_with("Troubleshooting"))
        .expect("no Troubleshooting section");
    for topic in [
        "stays frozen",
        "ECHILD",
        "EPERM",
        "another tool",
        "apt's lock",
    ] {
        assert!(
            trouble.contains(topic),
            "Troubleshooting says nothing of {topic}"
        );
    }
    let mut texts = vec![("README.md".to_string(), readme.clone())];
    for entry in std::fs::read_dir(crate_dir().join("docs"))
        .unwrap()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "md") {
            let name = entry.file_name().to_string_lossy().into_owned();
            texts.push((name, std::fs::read_to_string(entry.path()).unwrap()));
        }
    }
    for (name, text) in &texts {
        let lower = text.to_lowercase();
        for word in ["the brief", "ci machine", "this machine", "this session"] {
            assert!(!lower.contains(word), "{name} speaks of {word:?}");
        }
    }
}

#[test]
fn the_readme_tells_how_to_run_a_guest_agent_under_the_shim() {
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Hypervisor snapshots"))
        .expect("README has no Hypervisor snapshots section");
    for needed in [
        "examples/qemu-guest-agent.conf",
        "freezefs_protected_max_timeout",
        "FREEZEFS_TIMEOUT=-1",
        "lower count",
        "statically linked",
        "setuid",
        "Go programs",
    ] {
        assert!(
            section.contains(needed),
            "the section does not say {needed:?}"
        );
    }
}

#[test]
fn make_install_into_the_live_system_runs_ldconfig_and_says_so() {
    installed();
    let said = LIVE_INSTALL_OUTPUT
        .get()
        .expect("installed without DESTDIR");
    assert!(said.contains("make install: ran ldconfig"), "{said}");
}

#[test]
fn the_installed_library_has_its_soname_and_exports_only_the_api() {
    let lib = staged("lib/libfreezefs.so.1.0.0");
    let dynamic = run(Command::new("readelf").arg("-d").arg(&lib));
    assert!(
        dynamic.contains("Library soname: [libfreezefs.so.1]"),
        "{dynamic}"
    );
    let symbols = run(Command::new("nm").args(["-D", "--defined-only"]).arg(&lib));
    let names: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(names, API, "{symbols}");
}

#[test]
fn pkg_config_with_the_staged_sysroot_builds_and_runs_a_c_program() {
    let (_, stage) = installed();
    let pc_dir = staged("lib/pkgconfig");
    let flags = run(Command::new("pkg-config")
        .args(["--cflags", "--libs", "freezefs"])
        .env("PKG_CONFIG_SYSROOT_DIR", stage)
        .env("PKG_CONFIG_LIBDIR", &pc_dir));
    assert!(flags.contains("-lfreezefs"), "{flags}");
    let private = run(Command::new("pkg-config")
        .args(["--static", "--libs", "freezefs"])
        .env("PKG_CONFIG_SYSROOT_DIR", stage)
        .env("PKG_CONFIG_LIBDIR", &pc_dir));
    assert!(
        private.contains("-lpthread") || private.contains("-lgcc_s"),
        "Libs.private: {private}"
    );
    let dir = mkdtemp("freezefs-pc");
    let src = dir.join("query.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <freezefs.h>\nint main(void) { int rc = freezefs(\"/\", FS_Q_QUERY, 0);\n\
         printf(\"query=%d\\n\", rc); return rc == 0 ? 0 : 1; }\n",
    )
    .unwrap();
    let exe = dir.join("query");
    run(Command::new("sh").arg("-c").arg(format!(
        "cc -std=c99 -Wall -Wextra -Werror {} -o {} {}",
        src.display(),
        exe.display(),
        flags.trim()
    )));
    let out = run(Command::new(&exe)
        .env("LD_LIBRARY_PATH", staged("lib"))
        .env("FREEZEFS_RUNDIR", dir.join("run")));
    assert_eq!(out.trim(), "query=0");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A Tru64 source, unchanged, through `freezefs-compat.pc` of a `make
/// install PREFIX=...`: it builds with nothing but pkg-config's flags and
/// starts with no LD_LIBRARY_PATH (the rpath pkg-config gives), then
/// freezes, queries and thaws with the installed library and holder.
#[test]
fn the_tru64_example_builds_through_freezefs_compat_pc_and_runs_installed() {
    let (prefix, _) = installed();
    let fs = Scratch::new(Kind::Ext4);
    let flags = run(Command::new("pkg-config")
        .args(["--cflags", "--libs", "freezefs-compat"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")));
    let dir = mkdtemp("freezefs-compat-pc");
    let exe = dir.join("tru64_freeze");
    run(Command::new("sh").arg("-c").arg(format!(
        "cc -Wall -Wextra -Werror {} -o {} {}",
        crate_dir().join("examples/tru64_freeze.c").display(),
        exe.display(),
        flags.trim()
    )));
    let mut cmd = Command::new(&exe);
    cmd.arg(&fs.mnt);
    let mut cmd = with_env(&mut cmd, &fs);
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("FREEZEFS_HOLDER");
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("frozen, FS_Q_QUERY says 1"), "{printed}");
    let loaded = run(Command::new("ldd").arg(&exe).env_remove("LD_LIBRARY_PATH"));
    assert!(
        loaded.contains(&format!("{}/lib/libfreezefs.so.1", prefix.display())),
        "{loaded}"
    );
    assert!(!fs.kernel_frozen());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_installed_library_runs_the_installed_holder() {
    let (prefix, _) = installed();
    let fs = Scratch::new(Kind::Ext4);
    let src = fs.dir.join("freeze.c");
    std::fs::write(
        &src,
        "#include <freezefs.h>\nint main(int c, char **v) { (void)c; return freezefs(v[1], FS_Q_FREEZE, 30) == 0 ? 0 : 1; }\n",
    )
    .unwrap();
    let exe = fs.dir.join("freeze");
    let lib = prefix.join("lib");
    run(Command::new("cc")
        .arg(format!("-I{}", prefix.join("include").display()))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lfreezefs"));
    let mut cmd = Command::new(&exe);
    cmd.arg(&fs.mnt);
    let mut cmd = with_env(&mut cmd, &fs);
    cmd.env_remove("FREEZEFS_HOLDER");
    assert!(cmd.status().unwrap().success());
    let holder = fs.freezer().status(&fs.mnt).unwrap().holder_pid.unwrap();
    let exe = std::fs::read_link(format!("/proc/{holder}/exe")).unwrap();
    assert_eq!(
        exe,
        prefix.join("libexec/freezefs/freezefs-holder"),
        "ran a holder from elsewhere"
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn make_uninstall_removes_what_install_put() {
    let root = mkdtemp("freezefs-uninstall");
    let (prefix, _) = installed();
    let build = crate_dir().join("target/make-test");
    for target in ["install", "uninstall"] {
        run(Command::new("make")
            .current_dir(crate_dir())
            .arg(target)
            .arg(format!("PREFIX={}", prefix.display()))
            .arg(format!("BUILD={}", build.display()))
            .arg(format!("DESTDIR={}", root.display()))
            .env("CARGO", env!("CARGO")));
    }
    let left: Vec<PathBuf> = walk(&root)
        .into_iter()
        .filter(|p| p.is_file() || p.is_symlink())
        .collect();
    assert!(left.is_empty(), "left after uninstall: {left:?}");
    std::fs::remove_dir_all(root).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

#[test]
fn the_man_pages_render_without_warnings() {
    for (page, must) in [
        (
            "man/freezefs.3",
            &[
                "ERRORS",
                "EXAMPLES",
                "sysconfigtab",
                "LINKING",
                "freezefs-compat",
                "rpath",
                "ATTRIBUTES",
                "MT-Safe",
                "fork(2)",
                "FREEZEFS_HOLDER",
                "HISTORY",
                "Tru64",
            ][..],
        ),
        (
            "man/freezefs.8",
            &[
                "EXIT STATUS",
                "EXAMPLES",
                "--timeout",
                "FILES",
                "/etc/sysconfigtab",
                "freezefs_protected_max_timeout",
                "/run/freezefs",
                "freezefs-holder",
                "ENVIRONMENT",
                "FREEZEFS_RUNDIR",
                "NOTES",
                "EBUSY",
                "Never write",
                "FILESYSTEM SUPPORT",
                "JSON OUTPUT",
                "frozen_by_other_tool",
                "HISTORY",
                "needs root",
                "HOOKS",
                "FREEZEFS_THAW_REASON",
                "freezefs_hook_timeout",
                "ECANCELED",
            ][..],
        ),
        (
            "man/freezefs-group.8",
            &[
                "WHEN SOMETHING FAILS",
                "EXIT STATUS",
                "SECURITY",
                "grant-permission",
                "FREEZEFS_ETCD_ENDPOINTS",
                "TTL",
            ][..],
        ),
        (
            "man/thawfs.8",
            &[
                "EXIT STATUS",
                "SysRq",
                "RECOVERY",
                "ENVIRONMENT",
                "FILES",
                "not quiesced",
                "cannot be frozen",
                "HISTORY",
            ][..],
        ),
    ] {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(crate_dir().join(page))
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert!(out.status.success(), "{page}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{page} warns");
        let text = String::from_utf8_lossy(&out.stdout).replace('\u{2010}', "-");
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for word in must {
            assert!(text.contains(word), "{page} lacks {word}");
        }
    }
}

#[test]
fn every_freeze_thaw_timeout_reset_and_failure_goes_to_syslog() {
    let fs = Scratch::new(Kind::Ext4);
    let log = Syslog::new(&fs.dir);
    let command = |bin: &str, args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        let mut cmd = with_env(&mut cmd, &fs);
        cmd.env("FREEZEFS_SYSLOG_SOCKET", &log.path);
        cmd.status().unwrap()
    };
    let mnt = fs.mnt.as_os_str();
    let (freezefs, thawfs) = (crate::support::freezefs_exe(), crate::support::thawfs_exe());

    assert!(command(freezefs, &["-t".as_ref(), "1".as_ref(), mnt]).success());
    std::thread::sleep(Duration::from_millis(1300)); // the holder's timeout thaw
    assert!(!command(thawfs, &[mnt]).success()); // not frozen: a failure
    assert!(command(freezefs, &["-t".as_ref(), "-1".as_ref(), mnt]).success());
    assert!(command(freezefs, &["-r".as_ref(), "30".as_ref(), mnt]).success());
    assert!(command(thawfs, &[mnt]).success());
    let messages = log.drain();

    let device = fs.device().to_string();
    let frozen = event(&messages, "freezefs.frozen");
    for field in [
        format!("mount_point={}", fs.mnt.display()),
        format!("device={device}"),
        "uid=0".to_string(),
        "timeout=1".to_string(),
        "reason=".to_string(),
    ] {
        assert!(frozen.contains(&field), "{field} not in {frozen}");
    }
    assert!(
        frozen.starts_with("<29>freezefs["),
        "daemon.notice, ident freezefs: {frozen}"
    );
    assert!(event(&messages, "freezefs.timeout").contains("reason=deadline\\040passed"));
    assert!(event(&messages, "freezefs.failed").contains("not\\040frozen"));
    assert!(event(&messages, "freezefs.reset").contains("timeout=30"));
    assert!(event(&messages, "freezefs.thawed").contains(&format!("device={device}")));
}

#[test]
fn a_freeze_undone_after_its_caller_died_goes_to_syslog() {
    let fs = Scratch::new(Kind::Xfs);
    let log = Syslog::new(&fs.dir);
    // A record left 'freezing' by a caller that died (a reaped child's pid).
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    // Frozen by the command, so that the holder it starts reports to our socket.
    let mut freeze = Command::new(crate::support::freezefs_exe());
    freeze.args(["-t", "30"]).arg(&fs.mnt);
    let mut freeze = with_env(&mut freeze, &fs);
    freeze.env("FREEZEFS_SYSLOG_SOCKET", &log.path);
    assert!(freeze.status().unwrap().success());
    let _frozen_event = log.drain();
    fs.rewrite_record(&[("phase", "freezing".to_string()), ("pid", dead.to_string())]);
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.arg("-q").arg(&fs.mnt);
    let mut cmd = with_env(&mut cmd, &fs);
    cmd.env("FREEZEFS_SYSLOG_SOCKET", &log.path);
    // Whoever notices first (the holder, or this QUERY) undoes it.
    assert_eq!(
        cmd.status().unwrap().code(),
        Some(1),
        "an abandoned freeze is not frozen"
    );
    let messages = log.drain();
    let abandoned = messages.iter().find(|m| m.contains("freezefs.abandoned"));
    assert!(
        abandoned.is_some_and(|m| m.contains(&format!("pid={dead}"))),
        "{messages:#?}"
    );
    assert!(!fs.kernel_frozen());
}

/// A syslog that reads nothing: its queue fills, events are dropped, and
/// no freeze or thaw ever waits for it.
#[test]
fn a_full_syslog_socket_drops_events_and_never_blocks() {
    let fs = Scratch::new(Kind::Ext4);
    let log = Syslog::new(&fs.dir); // bound, never read
    let mut cmd = Command::new(support::program("cycles"));
    cmd.arg(&fs.mnt).arg("300");
    let mut cmd = with_env(&mut cmd, &fs);
    cmd.env("FREEZEFS_SYSLOG_SOCKET", &log.path);
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let queued = log.drain().len();
    assert!(queued > 0, "no event arrived at all");
    assert!(
        queued < 640,
        "{queued} events queued: the socket never filled, nothing was tested"
    );
    eprintln!("640 events sent to a full socket: {queued} queued, the rest dropped");
}

/// The units install with the holder's real path and pass systemd's own
/// check (`systemd-analyze verify`, which also checks that ExecStart
/// exists), and say what the issue of keepers asks of them.
#[test]
fn the_holder_units_install_and_pass_systemd_analyze_verify() {
    let (prefix, _) = installed();
    let units = prefix.join("lib/systemd/system");
    let socket = units.join("freezefs-holder.socket");
    let service = units.join("freezefs-holder.service");
    assert_units_verify(&[&socket, &service], "freezefs-holder");
    let service_text = std::fs::read_to_string(&service).unwrap();
    let holder = prefix.join("libexec/freezefs/freezefs-holder");
    for needed in [
        format!("ExecStart={} --serve /run/freezefs", holder.display()),
        "Restart=always".into(),
        "OOMScoreAdjust=-1000".into(),
        "After=freezefs-holder.socket local-fs.target remote-fs.target".into(),
        "KillMode=mixed".into(),
    ] {
        assert!(
            service_text.contains(&needed),
            "no {needed:?} in\n{service_text}"
        );
    }
    let socket_text = std::fs::read_to_string(&socket).unwrap();
    assert!(socket_text.contains("ListenSequentialPacket=/run/freezefs/holder.sock"));
    assert!(socket_text.contains("DirectoryMode=0700"));
}

/// `systemd-analyze verify` passes `units` and says nothing of any file
/// whose name contains `name`.
fn assert_units_verify(units: &[&Path], name: &str) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains(name), "{said}");
}

/// freezefs-guard.service as `make install` writes it: it passes
/// `systemd-analyze verify`, runs the installed freezefs --guard from boot,
/// and has the holder's protections.
#[test]
fn the_guard_unit_installs_and_passes_systemd_analyze_verify() {
    let (prefix, _) = installed();
    let unit = prefix.join("lib/systemd/system/freezefs-guard.service");
    assert_units_verify(&[&unit], "freezefs-guard");
    let text = std::fs::read_to_string(&unit).unwrap();
    for needed in [
        format!(
            "ExecStart={} --guard",
            prefix.join("sbin/freezefs").display()
        ),
        "Environment=FREEZEFS_RUNDIR=/run/freezefs".into(),
        "WantedBy=multi-user.target".into(),
        "Restart=always".into(),
        "OOMScoreAdjust=-1000".into(),
    ] {
        assert!(text.contains(&needed), "no {needed:?} in\n{text}");
    }
}

/// `ldconfig -n` on the installed library directory (that directory alone,
/// never the system's cache) links libfreezefs.so.1 to the library, not to
/// the shim, which has a SONAME of its own.
#[test]
fn ldconfig_links_the_library_soname_to_the_library_and_not_to_the_shim() {
    let lib = staged("lib");
    let shim_dynamic = run(Command::new("readelf")
        .arg("-d")
        .arg(lib.join("libfreezefs_preload.so")));
    assert!(
        shim_dynamic.contains("Library soname: [libfreezefs_preload.so]"),
        "{shim_dynamic}"
    );
    let dir = mkdtemp("freezefs-ldconfig");
    for name in ["libfreezefs.so.1.0.0", "libfreezefs_preload.so"] {
        std::fs::copy(lib.join(name), dir.join(name)).unwrap();
    }
    run(Command::new("ldconfig").arg("-n").arg(&dir));
    let linked = std::fs::read_link(dir.join("libfreezefs.so.1")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(linked, Path::new("libfreezefs.so.1.0.0"));
}
