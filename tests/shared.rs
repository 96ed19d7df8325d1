//! Tables shared through a file: many processes, one set of limits, state
//! that survives restarts and crashes, and files that are refused without being touched.
//!
//! Child processes are this test binary run again with `SLUICE_CHILD` set: the `child` test
//! below then does the child's part and every other test returns at once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice::{Category, Error, Limiter, LimiterBuilder, Status};

const T: i64 = 1_767_225_600_000;
const POLICY: &str = "global 100/1m\nauth 5/1m\nauth lockout 3/15m for 15m..24h\ncapacity 1000";

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-shared-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn digest(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(path).unwrap().hash(&mut h);
    h.finish()
}

fn sluice_cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// Run this test binary as a child doing `role` (see `child`).
fn spawn_child(role: &str, path: &Path, extra: &[(&str, String)]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env("SLUICE_CHILD", role)
        .env("SLUICE_CHILD_PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Is this process a child (see `child`)? Then the other tests do nothing.
fn in_child() -> bool {
    std::env::var("SLUICE_CHILD").is_ok()
}

/// `n` children doing `role` on `path` with the same environment.
fn spawn_children(n: usize, role: &str, path: &Path, extra: &[(&str, String)]) -> Vec<Child> {
    (0..n).map(|_| spawn_child(role, path, extra)).collect()
}

/// The lines a child printed between its markers (the test harness prints around them).
fn child_lines(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(out);
    text.lines()
        .skip_while(|l| !l.ends_with("BEGIN")) // libtest may print "test child ... " first
        .skip(1)
        .take_while(|l| *l != "END")
        .map(str::to_owned)
        .collect()
}

#[path = "support/windows.rs"]
mod windows;
use windows::max_in_any_window;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// The child processes' side. Without `SLUICE_CHILD` this test does nothing.
#[test]
fn child() {
    let Ok(role) = std::env::var("SLUICE_CHILD") else {
        return;
    };
    let path = PathBuf::from(env("SLUICE_CHILD_PATH"));
    println!("BEGIN");
    match role.as_str() {
        // Check one key as fast as possible until the deadline; print each admitted `now`.
        "hammer" => {
            let l = Limiter::open_file(&env("SLUICE_POLICY"), &path).unwrap();
            let until: i64 = env("SLUICE_UNTIL").parse().unwrap();
            let mut admitted = Vec::new();
            loop {
                let now = l.now_ms();
                if now >= until {
                    break;
                }
                if l.check_at("hot", Category::GLOBAL, now).unwrap().allowed {
                    admitted.push(now);
                }
            }
            for t in admitted {
                println!("{t}");
            }
        }
        // Like "hammer", but print each admitted `now` at once (the parent kills these).
        "hammer-until-killed" => {
            use std::io::Write;
            let l = Limiter::open_file(&env("SLUICE_POLICY"), &path).unwrap();
            let mut out = std::io::stdout().lock();
            loop {
                let now = l.now_ms();
                if l.check_at("hot", Category::GLOBAL, now).unwrap().allowed {
                    writeln!(out, "{now}").unwrap();
                    out.flush().unwrap();
                }
            }
        }
        // Wait for the start instant, open the (new) path, check a key once.
        "race-open" => {
            let start: i64 = env("SLUICE_START").parse().unwrap();
            while sluice::SystemClock.now_ms() < start {
                std::hint::spin_loop();
            }
            let l = Limiter::open_file(&env("SLUICE_POLICY"), &path).unwrap();
            let d = l
                .check_at(format!("child-{}", std::process::id()), Category::GLOBAL, T)
                .unwrap();
            println!("{}", d.remaining);
        }
        // Install new keys forever (every check an install into a full table) until killed.
        "churn" => {
            let l = Limiter::open_file(&env("SLUICE_POLICY"), &path).unwrap();
            println!("READY");
            let mut i = 0u64;
            loop {
                let _ = l.check_at(format!("churn-{i}"), Category::GLOBAL, T);
                i += 1;
            }
        }
        other => panic!("unknown child role {other}"),
    }
    println!("END");
}

use sluice::Clock;

#[test]
fn exact_across_four_processes() {
    if in_child() {
        return;
    }
    // 100 per 500 ms, hammered by four processes for eight windows.
    let dir = scratch("exact");
    let path = dir.join("t.sluice");
    let policy = "global 100/500ms\ncapacity 64";
    Limiter::open_file(policy, &path).unwrap();
    let until = sluice::SystemClock.now_ms() + 4_000;
    let children = spawn_children(
        4,
        "hammer",
        &path,
        &[
            ("SLUICE_POLICY", policy.to_string()),
            ("SLUICE_UNTIL", until.to_string()),
        ],
    );
    let mut all: Vec<i64> = Vec::new();
    let mut per_child = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a hammering child failed");
        let ts: Vec<i64> = child_lines(&out.stdout)
            .iter()
            .map(|l| l.parse().unwrap())
            .collect();
        per_child.push(ts.len());
        all.extend(ts);
    }
    // No window (t - 500 ms, t] holds more than 100 admitted requests, from all processes.
    let worst = max_in_any_window(&mut all, 500);
    assert!(worst <= 100, "a window held {worst} admitted requests");
    // And the limit was reached: the processes did share the limit rather than refuse all.
    assert_eq!(worst, 100, "no window was ever full: {per_child:?}");
    assert!(
        all.len() >= 400,
        "only {} admitted in 8 windows of 100",
        all.len()
    );
    assert!(
        per_child.iter().filter(|&&n| n > 0).count() >= 2,
        "only one process was ever admitted: {per_child:?}"
    );
    // The table's own counts agree with what the processes saw.
    let l = Limiter::attach(&path).unwrap();
    assert_eq!(l.stats().rules[0].passed, all.len() as u64);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn exact_while_processes_are_killed() {
    if in_child() {
        return;
    }
    // Three processes hammer one key; every 150 ms one of them is killed with SIGKILL (at
    // whatever instruction it is) and replaced. Every admission is printed the moment it is
    // made, so the replay misses at most the one a process was killed while printing: it can
    // hide an over-admission by one, never invent one.
    use std::io::{BufRead, BufReader};
    let dir = scratch("kill-exact");
    let path = dir.join("t.sluice");
    let policy = "global 50/300ms\ncapacity 64";
    Limiter::open_file(policy, &path).unwrap();
    let spawn = || {
        let mut c = spawn_child(
            "hammer-until-killed",
            &path,
            &[("SLUICE_POLICY", policy.to_string())],
        );
        let out = BufReader::new(c.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            out.lines()
                .map_while(Result::ok)
                .filter_map(|l| l.trim_start_matches("test child ... ").parse::<i64>().ok())
                .collect::<Vec<i64>>()
        });
        (c, reader)
    };
    let mut running: Vec<_> = (0..3).map(|_| spawn()).collect();
    let mut readers = Vec::new();
    for round in 0..12 {
        std::thread::sleep(Duration::from_millis(150));
        let (mut victim, reader) = running.remove(round % running.len());
        victim.kill().unwrap();
        victim.wait().unwrap();
        readers.push(reader);
        running.push(spawn());
    }
    for (mut c, reader) in running {
        c.kill().unwrap();
        c.wait().unwrap();
        readers.push(reader);
    }
    let mut all: Vec<i64> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    let worst = max_in_any_window(&mut all, 300);
    assert!(worst <= 50, "a window held {worst} admitted requests");
    assert!(
        all.len() >= 100,
        "only {} admitted in ~1.8 s (6 windows of 50)",
        all.len()
    );
    // The table still decides exactly for a fresh process.
    let l = Limiter::attach(&path).unwrap();
    let now = sluice::SystemClock.now_ms() + 1_000; // past every window the children used
    let admitted = (0..60)
        .filter(|_| l.check_at("hot", Category::GLOBAL, now).unwrap().allowed)
        .count();
    assert_eq!(admitted, 50);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn eight_processes_create_one_table() {
    if in_child() {
        return;
    }
    let dir = scratch("race");
    let path = dir.join("new.sluice");
    let policy = "global 1000/1h\ncapacity 4096";
    let start = sluice::SystemClock.now_ms() + 300;
    let children = spawn_children(
        8,
        "race-open",
        &path,
        &[
            ("SLUICE_POLICY", policy.to_string()),
            ("SLUICE_START", start.to_string()),
        ],
    );
    let mut remaining: Vec<u32> = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed to open the new path");
        remaining.push(child_lines(&out.stdout)[0].parse().unwrap());
    }
    // Each admitted its own key...
    assert_eq!(remaining, vec![999; 8]);
    // ...into one table: all eight keys are in the file.
    let st = Limiter::attach(&path).unwrap().stats_at(T);
    assert_eq!((st.live_keys, st.rules[0].passed), (8, 8), "{st:?}");
    // One file, mode 0600, and no temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["new.sluice".to_string()]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_killed_process_leaves_a_working_table() {
    if in_child() {
        return;
    }
    let dir = scratch("kill");
    let path = dir.join("t.sluice");
    // A small full table, so that every check of the child installs a key (evicting one).
    let policy = "global 3/1h\ncapacity 64";
    let l = Limiter::open_file(policy, &path).unwrap();
    for round in 0..3 {
        let mut child = spawn_child("churn", &path, &[("SLUICE_POLICY", policy.to_string())]);
        // Wait until it runs, let it churn a little, then kill it mid-whatever.
        let mut buf = [0u8; 64];
        use std::io::Read;
        let mut so_far = String::new();
        let stdout = child.stdout.as_mut().unwrap();
        while !so_far.contains("READY") {
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "child exited early");
            so_far.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        std::thread::sleep(Duration::from_millis(50 + 37 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // This process keeps working on the table: exact on a key of its own.
    let now = sluice::SystemClock.now_ms();
    let admitted = (0..10)
        .filter(|i| {
            l.check_at("parent", Category::GLOBAL, now + i)
                .unwrap()
                .allowed
        })
        .count();
    assert_eq!(admitted, 3);
    // A fresh process attaches cleanly and sees the same state.
    let out = sluice_cli()
        .args(["peek"])
        .arg(&path)
        .args(["parent", "global", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"remaining\":0"));
    // Any install the kill interrupted is taken over once it is 2 s old: installing keys
    // across the whole table afterwards leaves no position claimed.
    std::thread::sleep(Duration::from_millis(2_100));
    for i in 0..2_000 {
        let _ = l
            .check_at(format!("after-{i}"), Category::GLOBAL, now)
            .unwrap();
    }
    let st = l.stats_at(now);
    assert_eq!(st.installing, 0, "a claim was left behind: {st:?}");
    assert_eq!(st.live_keys, 64);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_lockout_survives_a_restart_and_unlock_frees_it() {
    if in_child() {
        return;
    }
    let dir = scratch("persist");
    let path = dir.join("t.sluice");
    let now = sluice::SystemClock.now_ms();
    {
        let l = Limiter::open_file(POLICY, &path).unwrap();
        let auth = l.category("auth").unwrap();
        for i in 0..3 {
            l.failure_at("203.0.113.9", auth, now + i).unwrap();
        }
        assert_eq!(
            l.check_at("203.0.113.9", auth, now + 3).unwrap().status,
            Status::Locked
        );
    } // closed
      // A new process (the CLI) sees the lock with the right retry_after.
    let out = sluice_cli()
        .arg("check")
        .arg(&path)
        .args(["203.0.113.9", "auth", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("\"status\":\"locked\""), "{text}");
    let retry: i64 = text
        .split("\"retry_after\":")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The lock ends 15 min after the third failure, stamped `now + 2`: a CLI that reads the
    // clock less than 2 ms after `now` (a fast machine) rounds 900.00x s up to 901.
    assert!((895..=901).contains(&retry), "retry_after {retry}");
    // Reopened in this process too, with the policy spelled differently: same table.
    let l = Limiter::open_file(
        "# the same policy\nglobal   100/60s\nauth 5/1m\nauth lockout 3/15m for 15m..1d\ncapacity 1000\n",
        &path,
    )
    .unwrap();
    let auth = l.category("auth").unwrap();
    assert_eq!(l.peek("203.0.113.9", auth).unwrap().status, Status::Locked);
    // `sluice unlock` frees it.
    let out = sluice_cli()
        .arg("unlock")
        .arg(&path)
        .args(["203.0.113.9", "auth"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("unlocked"));
    assert!(l.check("203.0.113.9", auth).unwrap().allowed);
    // Unlocking again: not locked, exit 1.
    let out = sluice_cli()
        .arg("unlock")
        .arg(&path)
        .args(["203.0.113.9", "auth"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unlock_of_an_unknown_key_or_category_changes_nothing() {
    if in_child() {
        return;
    }
    let dir = scratch("unlock-bad");
    let path = dir.join("t.sluice");
    let l = Limiter::open_file(POLICY, &path).unwrap();
    let auth = l.category("auth").unwrap();
    for i in 0..3 {
        l.failure_at("locked-key", auth, T + i).unwrap();
    }
    drop(l);
    let before = digest(&path);
    let run = |args: &[&str]| {
        let out = sluice_cli()
            .arg("unlock")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["never-seen", "auth"]);
    assert_eq!(code, Some(4));
    assert!(
        err.contains("holds nothing for key \"never-seen\""),
        "{err}"
    );
    let (code, err) = run(&["locked-key", "no-such-category"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown category \"no-such-category\""),
        "{err}"
    );
    let (code, err) = run(&["locked-key", "global"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("has no lockout"), "{err}");
    let (code, err) = run(&["locked-key"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("PATH KEY CATEGORY"), "{err}");
    assert_eq!(digest(&path), before, "a refused unlock changed the file");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn stat_reports_the_table() {
    if in_child() {
        return;
    }
    let dir = scratch("stat");
    let path = dir.join("t.sluice");
    let l = Limiter::open_file(POLICY, &path).unwrap();
    let auth = l.category("auth").unwrap();
    let now = sluice::SystemClock.now_ms();
    for i in 0..7 {
        l.check_at("k", auth, now + i).unwrap();
    }
    for i in 0..3 {
        l.failure_at("bad", auth, now + i).unwrap();
    }
    let out = sluice_cli()
        .arg("stat")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json = String::from_utf8_lossy(&out.stdout);
    for want in [
        "\"capacity\":1000",
        "\"live_keys\":2",
        "\"locked_keys\":1",
        "\"installing\":0",
        "{\"rule\":\"global 100/1m\",\"category\":\"global\",\"passed\":5,\"limited\":0",
        "{\"rule\":\"auth 5/1m\",\"category\":\"auth\",\"passed\":5,\"limited\":2",
        "{\"rule\":\"auth lockout 3/15m for 15m..1d\",\"category\":\"auth\",\"passed\":0,\"limited\":0,\"dry_run_limited\":0,\"locked\":0,\"lockouts\":1}",
    ] {
        assert!(json.contains(want), "{want} not in {json}");
    }
    let out = sluice_cli().arg("stat").arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("live keys    2") && text.contains("locked keys  1"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---- bad input: each a clear error, and the file untouched ----------------------------------

fn open_err(policy: Option<&str>, path: &Path) -> Error {
    let mut b = LimiterBuilder::new().path(path);
    if let Some(p) = policy {
        b = b.policy(p);
    }
    b.open().expect_err("opened a file that should be refused")
}

#[test]
fn another_policy_is_refused_naming_the_rule() {
    let dir = scratch("mismatch");
    let path = dir.join("t.sluice");
    Limiter::open_file(POLICY, &path).unwrap();
    let before = digest(&path);
    let e = open_err(Some(&POLICY.replace("auth 5/1m", "auth 10/1m")), &path);
    assert!(matches!(e, Error::PolicyMismatch { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains(&path.display().to_string()), "{m}");
    assert!(
        m.contains("`auth 5/1m` where the given one has `auth 10/1m`"),
        "{m}"
    );
    assert!(m.contains("not changed"), "{m}");
    let e = open_err(
        Some(&POLICY.replace("capacity 1000", "capacity 2000")),
        &path,
    );
    assert!(
        e.to_string()
            .contains("`capacity 1000` where the given one has `capacity 2000`"),
        "{e}"
    );
    let e = open_err(Some(&format!("{POLICY}\nlogin 1/1s")), &path);
    assert!(
        e.to_string()
            .contains("the given policy also has `login 1/1s`"),
        "{e}"
    );
    assert_eq!(digest(&path), before);
    // Without a policy, the file's own is used.
    let l = Limiter::attach(&path).unwrap();
    assert_eq!(
        l.policy().canonical(),
        sluice::Policy::parse(POLICY).unwrap().canonical()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A valid table file's bytes, for corrupting.
fn table_bytes(dir: &Path) -> Vec<u8> {
    let p = dir.join("model.sluice");
    Limiter::open_file(POLICY, &p).unwrap();
    std::fs::read(&p).unwrap()
}

#[test]
fn damaged_and_foreign_files_are_refused_untouched() {
    let dir = scratch("damaged");
    let good = table_bytes(&dir);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty",
            Vec::new(),
            "0 bytes long, shorter than a table's 128-byte header",
        ),
        ("short", good[..100].to_vec(), "100 bytes long"),
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("zeros", vec![0u8; good.len()], "header is all zeros"),
        (
            "random header",
            {
                let mut b = good.clone();
                let mut x = 0x9E3779B97F4A7C15u64;
                for byte in b.iter_mut().take(128) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *byte = x as u8;
                }
                b
            },
            "bad magic number",
        ),
        (
            "other byte order",
            {
                let mut b = good.clone();
                b[..8].reverse();
                b
            },
            "other byte order",
        ),
        (
            "bad policy length",
            {
                let mut b = good.clone();
                b[7 * 8..8 * 8].copy_from_slice(&u64::MAX.to_ne_bytes());
                b
            },
            "gives the stored policy",
        ),
        (
            "edited policy text",
            {
                let mut b = good.clone();
                let at = 128 + POLICY.find("100").unwrap();
                b[at] = b'9';
                b
            },
            "does not match the policy fingerprint",
        ),
        (
            "wrong capacity word",
            {
                let mut b = good.clone();
                b[2 * 8..3 * 8].copy_from_slice(&5u64.to_ne_bytes());
                b
            },
            "capacity is 5 where its stored policy lays out 1000",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.join(format!("{}.sluice", name.replace(' ', "-")));
        std::fs::write(&path, &bytes).unwrap();
        for policy in [None, Some(POLICY)] {
            let e = open_err(policy, &path);
            assert!(matches!(e, Error::NotATable { .. }), "{name}: {e:?}");
            let m = e.to_string();
            assert!(m.contains(want), "{name}: {m}");
            assert!(
                m.contains(&path.display().to_string()) && m.contains("not changed"),
                "{m}"
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{name}: the file was changed"
            );
        }
        // The CLI says the same, with exit status 3.
        let out = sluice_cli().arg("stat").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{name}"
        );
    }
    // Another format version.
    let path = dir.join("v9.sluice");
    let mut b = good.clone();
    b[8..16].copy_from_slice(&9u64.to_ne_bytes());
    std::fs::write(&path, &b).unwrap();
    let e = open_err(Some(POLICY), &path);
    assert!(
        matches!(
            e,
            Error::FormatVersion {
                found: 9,
                supported: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("format version 9, but this sluice reads version 1"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b);
    // A directory.
    let e = open_err(Some(POLICY), &dir);
    assert!(
        e.to_string().contains("not a regular file") || matches!(e, Error::File { .. }),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_directories_and_missing_tables_are_named() {
    let dir = scratch("missing");
    let path = dir.join("no/such/dir/t.sluice");
    let e = open_err(Some(POLICY), &path);
    assert!(
        matches!(
            e,
            Error::File {
                action: "create",
                ..
            }
        ),
        "{e:?}"
    );
    let m = e.to_string();
    assert!(
        m.contains(&path.display().to_string()) && m.contains("does the directory exist"),
        "{m}"
    );
    let e = open_err(None, &dir.join("absent.sluice"));
    assert!(matches!(e, Error::NoTable { .. }), "{e:?}");
    assert!(e.to_string().contains("no policy was given to create one"));
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "something was created"
    );
    // A bad policy is reported as the policy's fault, and creates nothing.
    let e = open_err(Some("global 5 per minute"), &dir.join("t.sluice"));
    assert!(matches!(e, Error::Policy(_)), "{e:?}");
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_file_without_permission_is_refused() {
    if in_child() {
        return;
    }
    let dir = scratch("perm");
    let path = dir.join("t.sluice");
    Limiter::open_file(POLICY, &path).unwrap();
    let before = digest(&path);
    // Root ignores file modes, so the refused opener is the CLI run as `nobody` when this test
    // runs as root; otherwise, this process after taking its own permission away.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A copy of the tool that `nobody` can run wherever the build directory is.
        let tool = dir.join("sluice");
        std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &tool).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another test thread forking while the copy was open for writing leaves the child a
        // writable descriptor until it execs, and exec then fails with ETXTBSY: retry.
        let out = (0..50)
            .find_map(|_| {
                match Command::new(&tool)
                    .arg("stat")
                    .arg(&path)
                    .uid(65534)
                    .gid(65534)
                    .output()
                {
                    Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        None
                    }
                    other => Some(other.unwrap()),
                }
            })
            .expect("the copied tool stayed busy for a second");
        assert_eq!(out.status.code(), Some(3));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot open table file") && err.contains("ermission denied"),
            "{err}"
        );
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = open_err(None, &path);
        assert!(e.to_string().contains("ermission denied"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert_eq!(digest(&path), before);
    let _ = std::fs::remove_dir_all(dir);
}

/// Run the tool as `nobody` when this test runs as root (root ignores file modes), from a copy
/// in `dir` that `nobody` can run wherever the build directory is.
fn sluice_cli_as_reader(dir: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tool = dir.join("sluice");
    if !tool.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &tool).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Another test thread forking while the copy was open for writing leaves the child a
    // writable descriptor until it execs, and exec then fails with ETXTBSY: retry.
    (0..50)
        .find_map(|_| {
            let mut c = Command::new(&tool);
            c.args(args);
            if root {
                c.uid(65534).gid(65534);
            }
            match c.output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                other => Some(other.unwrap()),
            }
        })
        .expect("the copied tool stayed busy for a second")
}

#[test]
fn stat_and_peek_need_only_read_permission() {
    if in_child() {
        return;
    }
    let dir = scratch("read-only");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("t.sluice");
    let l = Limiter::open_file(POLICY, &path).unwrap();
    let auth = l.category("auth").unwrap();
    let now = sluice::SystemClock.now_ms();
    for i in 0..2 {
        assert!(l.check_at("k", auth, now + i).unwrap().allowed);
    }
    for i in 0..3 {
        l.failure_at("bad", auth, now + i).unwrap();
    }
    drop(l);
    // Readable by everyone, writable by nobody (and owned by root, when run as root).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = digest(&path);
    let p = path.as_os_str();
    let arg = |s: &'static str| std::ffi::OsStr::new(s);

    let out = sluice_cli_as_reader(&dir, &[arg("stat"), p, arg("--json")]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{json} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "\"live_keys\":2",
        "\"locked_keys\":1",
        "{\"rule\":\"auth 5/1m\",\"category\":\"auth\",\"passed\":2,\"limited\":0",
    ] {
        assert!(json.contains(want), "{want} not in {json}");
    }
    let out = sluice_cli_as_reader(
        &dir,
        &[arg("peek"), p, arg("k"), arg("auth"), arg("--json")],
    );
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{json} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        json.contains("\"allowed\":true") && json.contains("\"remaining\":2"),
        "{json}"
    );
    let out = sluice_cli_as_reader(&dir, &[arg("peek"), p, arg("bad"), arg("auth")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("refused (locked)"), "{text}");
    // Recording needs write permission: check and unlock are refused, naming why.
    for args in [
        [arg("check"), p, arg("k"), arg("auth")],
        [arg("unlock"), p, arg("bad"), arg("auth")],
    ] {
        let out = sluice_cli_as_reader(&dir, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains("cannot open table file") && err.contains("ermission denied"),
            "{err}"
        );
    }
    assert_eq!(digest(&path), before, "the reader changed the table");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn works_on_dev_shm() {
    if in_child() {
        return;
    }
    // tmpfs, where servers usually keep a table; the other tests use the temporary directory.
    let shm = Path::new("/dev/shm");
    assert!(shm.is_dir(), "/dev/shm is missing on this machine");
    let path = shm.join(format!("sluice-test-{}.sluice", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = Limiter::open_file("global 2/1m\ncapacity 100", &path).unwrap();
    assert!(l.check_at("k", Category::GLOBAL, T).unwrap().allowed);
    let out = sluice_cli()
        .arg("stat")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"live_keys\":1"));
    let again = Limiter::attach(&path).unwrap();
    assert_eq!(
        again.peek_at("k", Category::GLOBAL, T).unwrap().remaining,
        0
    );
    std::fs::remove_file(&path).unwrap();
}
