//! Table files beyond one process's reach: a read-only attach for users who may only read a
//! table, the mode a table is created with, and the temporary files that creators killed
//! while creating leave behind.
//!
//! Tests run as root, whom file modes do not stop: the tests of permissions fork a child
//! that drops to `nobody` before it opens anything (see `support/fork.rs`).

#[path = "support/fork.rs"]
mod fork;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sluice::{Category, Error, Limiter, LimiterBuilder, Status};

const T: i64 = 1_767_225_600_000;
const POLICY: &str = "api 5/1m\nauth lockout 3/15m for 15m\ncapacity 1000";
const NOBODY: libc::uid_t = 65534;

/// A fresh directory for one test, that every user may enter.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn digest(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(path).unwrap().hash(&mut h);
    h.finish()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// A table at `path` with two keys recorded: `k` checked twice, `guess` locked out.
fn writer(path: &Path) -> Limiter {
    let l = Limiter::open_file(POLICY, path).unwrap();
    let api = l.category("api").unwrap();
    let auth = l.category("auth").unwrap();
    for i in 0..2 {
        assert!(l.check_at("k", api, T + i).unwrap().allowed);
    }
    for i in 0..3 {
        l.failure_at("guess", auth, T + i).unwrap();
    }
    l
}

/// Become `nobody` (group and user): from here file modes apply.
fn drop_to_nobody() {
    // SAFETY: plain system calls on this (child) process's credentials.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setgid(NOBODY), 0, "setgid");
        assert_eq!(libc::setuid(NOBODY), 0, "setuid");
        assert_eq!(libc::geteuid(), NOBODY);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_reader_with_read_permission_only_sees_what_the_writer_recorded() {
    let _lock = fork::fork_lock();
    let dir = scratch("reader");
    let path = dir.join("t.sluice");
    drop(writer(&path));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = digest(&path);
    let (code, report) = fork::in_child(|out| {
        if is_root() {
            drop_to_nobody();
        }
        // Read and write is refused: the privileges are really gone.
        match Limiter::attach(&path) {
            Err(Error::File { action, source, .. }) => {
                let _ = write!(out, "rw: {action} {:?}; ", source.kind());
            }
            other => {
                let _ = write!(out, "rw: {other:?}; ");
            }
        }
        let l = LimiterBuilder::new()
            .path(&path)
            .read_only(true)
            .open()
            .unwrap();
        let api = l.category("api").unwrap();
        let auth = l.category("auth").unwrap();
        let st = l.stats_at(T + 10);
        let k = l.peek_at("k", api, T + 10).unwrap();
        let guess = l.peek_at("guess", auth, T + 10).unwrap();
        let refused = l.check_at("k", api, T + 10).unwrap_err();
        let _ = write!(
            out,
            "live {} locked {} passed {} lockouts {}; k remaining {}; guess {}; check: {}",
            st.live_keys,
            st.locked_keys,
            st.rules[0].passed,
            st.rules[1].lockouts,
            k.remaining,
            guess.status.as_str(),
            refused
        );
        0
    });
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report,
        format!(
            "rw: open PermissionDenied; live 2 locked 1 passed 2 lockouts 1; k remaining 2; \
             guess locked; check: the table {} was opened read-only: only peek and stats are \
             possible; nothing was recorded",
            path.display()
        )
    );
    assert_eq!(digest(&path), before, "the reader changed the file");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_read_only_limiter_records_nothing() {
    let dir = scratch("records-nothing");
    let path = dir.join("t.sluice");
    let w = writer(&path);
    let before = digest(&path);
    let r = LimiterBuilder::new()
        .path(&path)
        .read_only(true)
        .huge_pages(true)
        .open()
        .unwrap();
    let api = r.category("api").unwrap();
    let auth = r.category("auth").unwrap();
    let read_only = |e: Error| matches!(&e, Error::ReadOnly { path: p } if p == &path);
    assert!(read_only(r.check_at("k", api, T + 5).unwrap_err()));
    assert!(read_only(r.check_at("new", api, T + 5).unwrap_err()));
    assert!(read_only(r.allow_at("k", api, T + 5).unwrap_err()));
    assert!(read_only(r.failure_at("k", auth, T + 5).unwrap_err()));
    assert!(read_only(r.success_at("guess", auth, T + 5).unwrap_err()));
    assert!(read_only(r.unlock_at("guess", auth, T + 5).unwrap_err()));
    let mut out = [sluice::Decision::default(); 1];
    assert!(read_only(
        r.check_batch_at(&[("k", api)], T + 5, &mut out)
            .unwrap_err()
    ));
    assert_eq!(digest(&path), before, "a refused call changed the file");
    // It reads what the writer goes on recording (one mapping of one file).
    assert!(w.check_at("k", api, T + 6).unwrap().allowed);
    assert_eq!(r.peek_at("k", api, T + 7).unwrap().remaining, 1);
    assert_eq!(r.stats_at(T + 7).rules, w.stats_at(T + 7).rules);
    let d = r.peek_at("guess", auth, T + 7).unwrap();
    assert_eq!((d.allowed, d.status), (false, Status::Locked));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_read_only_attach_never_creates_and_still_checks_the_policy() {
    let dir = scratch("ro-open");
    let path = dir.join("t.sluice");
    let e = Limiter::builder(POLICY)
        .path(&path)
        .read_only(true)
        .open()
        .unwrap_err();
    assert!(
        matches!(&e, Error::NoTable { path: p } if p == &path),
        "{e:?}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "created something"
    );
    drop(writer(&path));
    let e = Limiter::builder("api 6/1m\nauth lockout 3/15m for 15m\ncapacity 1000")
        .path(&path)
        .read_only(true)
        .open()
        .unwrap_err();
    assert!(matches!(e, Error::PolicyMismatch { .. }), "{e:?}");
    let same = Limiter::builder(POLICY).path(&path).read_only(true).open();
    assert_eq!(same.unwrap().stats_at(T).live_keys, 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_table_is_created_with_the_mode_given_whatever_the_umask() {
    let _lock = fork::fork_lock();
    let dir = scratch("mode");
    let (code, report) = fork::in_child(|out| {
        // SAFETY: umask has no preconditions (and this is the child's own).
        unsafe { libc::umask(0o077) };
        for (name, mode) in [
            ("group", Some(0o660)),
            ("default", None),
            ("all", Some(0o666)),
        ] {
            let mut b = Limiter::builder(POLICY).path(dir.join(name));
            if let Some(m) = mode {
                b = b.mode(m);
            }
            if let Err(e) = b.open() {
                let _ = write!(out, "{name}: {e}");
                return 1;
            }
        }
        0
    });
    assert_eq!(code, 0, "{report}");
    assert_eq!(mode_of(&dir.join("group")), 0o660);
    assert_eq!(mode_of(&dir.join("default")), 0o600);
    assert_eq!(mode_of(&dir.join("all")), 0o666);
    // An existing file keeps its mode, whatever mode the opener asks for.
    let l = Limiter::builder(POLICY)
        .path(dir.join("group"))
        .mode(0o600)
        .open()
        .unwrap();
    assert!(l.check_at("k", Category::GLOBAL, T).unwrap().allowed);
    assert_eq!(mode_of(&dir.join("group")), 0o660);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_mode_beyond_read_and_write_bits_is_refused() {
    let dir = scratch("bad-mode");
    for (mode, bad) in [(0o4600, "0o4000"), (0o700, "0o100"), (0o1666, "0o1000")] {
        let e = Limiter::builder(POLICY)
            .path(dir.join("t"))
            .mode(mode)
            .open()
            .unwrap_err();
        let Error::File { source, .. } = &e else {
            panic!("mode {mode:#o}: {e:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
        let m = e.to_string();
        assert!(
            m.contains(&format!("{mode:#o}")) && m.contains(bad) && m.contains("0o666"),
            "{m}"
        );
    }
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "created something"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A pid no process has: a child's, once it has exited and been reaped.
fn dead_pid() -> libc::pid_t {
    let child = fork::fork(|_| 0);
    let pid = child.pid;
    assert_eq!(child.wait().0, 0);
    pid
}

fn make_old(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(600))
        .unwrap();
}

#[test]
fn creating_removes_only_what_dead_creators_left() {
    let _lock = fork::fork_lock();
    let dir = scratch("leftovers");
    let dead = dead_pid();
    let me = std::process::id();
    let leftover = |name: &str, pid: u32, random: &str| {
        let p = dir.join(format!(".{name}.{pid}.{random}.creating"));
        std::fs::write(&p, b"half a table").unwrap();
        p
    };
    let dead_old = leftover("t.sluice", dead as u32, "1f2e3d");
    make_old(&dead_old);
    // Just made: its creator may be alive in another PID namespace or on another machine.
    let dead_new = leftover("t.sluice", dead as u32, "abc");
    let live_old = leftover("t.sluice", me, "1f2e3d");
    make_old(&live_old);
    let other_table = leftover("u.sluice", dead as u32, "1f2e3d");
    make_old(&other_table);
    // Not of the form `.NAME.PID.RANDOM.creating`.
    let odd = dir.join(format!(".t.sluice.{dead}.creating"));
    std::fs::write(&odd, b"").unwrap();
    make_old(&odd);

    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 5);
    let l = Limiter::open_file(POLICY, dir.join("t.sluice")).unwrap();
    assert!(l.check_at("k", Category::GLOBAL, T).unwrap().allowed);
    assert!(!dead_old.exists(), "a dead creator's old file stayed");
    for kept in [&dead_new, &live_old, &other_table, &odd] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    // Attaching removes nothing: only a creator looks.
    make_old(&dead_new);
    drop(Limiter::attach(dir.join("t.sluice")).unwrap());
    assert!(dead_new.exists());
    let _ = std::fs::remove_dir_all(dir);
}
