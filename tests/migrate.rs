//! Migration between table files (`Limiter::migrate_at`): what a key's state keeps under a
//! changed policy, capacity changes, bad input, and what processes still attached to the old
//! table see.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sluice::{Error, Limiter, LimiterBuilder, Status, REHOME_MIN_CAPACITY};

const T: i64 = 1_767_225_600_000;
const MIN: i64 = 60_000;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-migrate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn digest(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(path).unwrap().hash(&mut h);
    h.finish()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const OLD: &str = "\
global 100/1m
api 5/1m
write 3/1h
auth 10/1m
auth lockout 3/15m for 15m..24h
capacity 1024
";

/// `OLD` with other rules changed: a larger global limit, a new media category, a looser
/// auth rule, the write rule gone; the lockout and `api 5/1m` are unchanged.
const NEW: &str = "\
global 200/1m
api 5/1m
auth 20/1m
media 7/1m
auth lockout 3/15m for 15m..24h
capacity 1024
";

#[test]
fn a_locked_key_stays_locked_with_its_retry_after_and_level() {
    let dir = scratch("locked");
    let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
    let old = Limiter::open_file(OLD, &from).unwrap();
    let auth = old.category("auth").unwrap();
    // A first lockout (level 0 → 15 min), served, then a second one (level 1 → 30 min).
    for i in 0..3 {
        old.failure_at("mallory", auth, T + i).unwrap();
    }
    let t2 = T + 16 * MIN;
    for i in 0..3 {
        old.failure_at("mallory", auth, t2 + i).unwrap();
    }
    let now = t2 + 5 * MIN;
    let before = old.peek_at("mallory", auth, now).unwrap();
    assert_eq!(before.status, Status::Locked);
    assert_eq!(before.retry_after, 25 * 60 + 1); // the lock began 2 ms after t2

    let report = Limiter::migrate_at(&from, &to, Some(NEW), now).unwrap();
    assert_eq!((report.keys, report.locked_keys), (1, 1));
    assert!(!report.in_place);

    let new = Limiter::attach(&to).unwrap();
    assert_eq!(new.policy_text(), NEW);
    let nauth = new.category("auth").unwrap();
    let after = new.peek_at("mallory", nauth, now).unwrap();
    assert_eq!(after.status, Status::Locked);
    assert_eq!(after.retry_after, before.retry_after);
    assert_eq!(
        new.check_at("mallory", nauth, now).unwrap(),
        old.check_at("mallory", auth, now).unwrap()
    );
    // The level came along: the next lockout, once this one has ended, lasts 60 minutes in
    // both tables (15 min × 2^2).
    let t3 = t2 + 31 * MIN;
    for i in 0..3 {
        old.failure_at("mallory", auth, t3 + i).unwrap();
        new.failure_at("mallory", nauth, t3 + i).unwrap();
    }
    let (o, n) = (
        old.peek_at("mallory", auth, t3 + 10).unwrap(),
        new.peek_at("mallory", nauth, t3 + 10).unwrap(),
    );
    assert_eq!(n.status, Status::Locked);
    assert_eq!(n.retry_after, 60 * 60);
    assert_eq!(n.retry_after, o.retry_after);
}

#[test]
fn unchanged_rules_keep_their_counts_exactly() {
    let dir = scratch("counts");
    let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
    let old = Limiter::open_file(OLD, &from).unwrap();
    let api = old.category("api").unwrap();
    let write = old.category("write").unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("client-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        for j in 0..(i % 6) {
            old.check_at(k, api, T + j as i64).unwrap();
        }
        old.check_at(k, write, T).unwrap();
    }
    let now = T + 1_000;
    let report = Limiter::migrate_at(&from, &to, Some(NEW), now).unwrap();
    assert_eq!(report.keys, keys.len() as u64);
    assert_eq!(report.locked_keys, 0);
    let api_rule = report.rules.iter().find(|r| r.rule == "api 5/1m").unwrap();
    assert!(api_rule.unchanged);
    assert_eq!(
        api_rule.keys_with_entries,
        keys.iter().enumerate().filter(|(i, _)| i % 6 > 0).count() as u64
    );
    let media = report
        .rules
        .iter()
        .find(|r| r.rule.starts_with("media"))
        .unwrap();
    assert!(!media.unchanged);
    assert_eq!(media.keys_with_entries, 0);

    let new = Limiter::attach(&to).unwrap();
    let napi = new.category("api").unwrap();
    for k in &keys {
        let (o, n) = (
            old.check_at(k, api, now).unwrap(),
            new.check_at(k, napi, now).unwrap(),
        );
        assert_eq!(
            (n.allowed, n.remaining, n.reset),
            (o.allowed, o.remaining, o.reset),
            "{k}"
        );
    }
}

#[test]
fn the_same_policy_copies_every_key() {
    let dir = scratch("copy");
    let (from, to) = (dir.join("old.sluice"), dir.join("moved.sluice"));
    let old = Limiter::open_file(OLD, &from).unwrap();
    let write = old.category("write").unwrap();
    for i in 0..50 {
        old.check_at(format!("k{i}"), write, T + i).unwrap();
    }
    let report = Limiter::migrate_at(&from, &to, None, T + 100).unwrap();
    assert_eq!(report.keys, 50);
    assert!(report.rules.iter().all(|r| r.unchanged));
    let new = Limiter::attach(&to).unwrap();
    for i in 0..50 {
        let k = format!("k{i}");
        assert_eq!(
            new.peek_at(&k, write, T + 200).unwrap(),
            old.peek_at(&k, write, T + 200).unwrap()
        );
    }
}

fn with_capacity(policy: &str, capacity: usize) -> String {
    policy.replace("capacity 1024", &format!("capacity {capacity}"))
}

#[test]
fn a_capacity_change_re_homes_every_key() {
    let dir = scratch("capacity");
    let from = dir.join("old.sluice");
    let policy = with_capacity(OLD, REHOME_MIN_CAPACITY);
    let old = Limiter::open_file(&policy, &from).unwrap();
    let api = old.category("api").unwrap();
    let auth = old.category("auth").unwrap();
    let keys: Vec<String> = (0..3_000)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        for _ in 0..(i % 4) {
            old.check_at(k, api, T).unwrap();
        }
    }
    for i in 0..3 {
        old.failure_at("locked-out", auth, T + i).unwrap();
    }
    let now = T + 10;
    for capacity in [REHOME_MIN_CAPACITY * 2 + 7, 5_000] {
        let to = dir.join(format!("new-{capacity}.sluice"));
        let report =
            Limiter::migrate_at(&from, &to, Some(&with_capacity(OLD, capacity)), now).unwrap();
        assert_eq!(report.to_capacity, capacity as u64);
        assert_eq!(report.locked_keys, 1);
        let live = (0..keys.len()).filter(|i| i % 4 > 0).count() as u64 + 1;
        assert_eq!(report.keys + report.dropped, live);
        let new = Limiter::attach(&to).unwrap();
        assert_eq!(new.stats_at(now).live_keys, report.keys);
        assert_eq!(
            new.peek_at("locked-out", auth, now).unwrap().status,
            Status::Locked
        );
        let mut same = 0;
        for k in &keys {
            let (o, n) = (
                old.peek_at(k, api, now).unwrap(),
                new.peek_at(k, api, now).unwrap(),
            );
            same += (o == n) as u64;
        }
        // Every carried key decides as before; a dropped one (none when the table grows)
        // decides as a new key.
        assert!(same >= report.keys - 1, "{same} of {} carried", report.keys);
        if capacity > REHOME_MIN_CAPACITY {
            assert_eq!(report.dropped, 0);
        }
        // The source table was superseded by the first migration; attach read-only from now
        // on is what a second migration's source needs, so give each its own source.
        std::fs::remove_file(&from).unwrap();
        let fresh = Limiter::open_file(&policy, &from).unwrap();
        for (i, k) in keys.iter().enumerate() {
            for _ in 0..(i % 4) {
                fresh.check_at(k, api, T).unwrap();
            }
        }
        for i in 0..3 {
            fresh.failure_at("locked-out", auth, T + i).unwrap();
        }
    }
}

#[test]
fn a_capacity_change_of_a_small_table_is_refused_and_creates_nothing() {
    let dir = scratch("small");
    let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
    let old = Limiter::open_file(OLD, &from).unwrap();
    old.check_at("k", old.category("api").unwrap(), T).unwrap();
    let before = digest(&from);
    let err = Limiter::migrate_at(&from, &to, Some(&with_capacity(OLD, 2048)), T).unwrap_err();
    assert!(matches!(err, Error::Migration { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("capacity") && msg.contains(&REHOME_MIN_CAPACITY.to_string()),
        "{msg}"
    );
    assert!(!to.exists());
    assert_eq!(entries(&dir), vec!["old.sluice"]);
    assert_eq!(digest(&from), before);
    assert_eq!(old.superseded(), None);
}

#[test]
fn a_locked_key_without_room_fails_the_migration() {
    let dir = scratch("noroom");
    let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
    let policy = with_capacity(OLD, REHOME_MIN_CAPACITY);
    let old = Limiter::open_file(&policy, &from).unwrap();
    let auth = old.category("auth").unwrap();
    for k in ["a", "b", "c"] {
        for i in 0..3 {
            old.failure_at(k, auth, T + i).unwrap();
        }
    }
    let err = Limiter::migrate_at(&from, &to, Some(&with_capacity(OLD, 2)), T + 10).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(!to.exists());
    assert_eq!(entries(&dir), vec!["old.sluice"]);
    assert_eq!(old.superseded(), None);
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let dir = scratch("bad");
    let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
    let old = Limiter::open_file(OLD, &from).unwrap();
    old.check_at("k", old.category("api").unwrap(), T).unwrap();
    let before = digest(&from);

    // The target exists.
    std::fs::write(&to, b"somebody's file").unwrap();
    let err = Limiter::migrate_at(&from, &to, None, T).unwrap_err();
    assert!(matches!(err, Error::Migration { .. }), "{err}");
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(std::fs::read(&to).unwrap(), b"somebody's file");
    std::fs::remove_file(&to).unwrap();

    // The policy does not parse: line and column.
    let err =
        Limiter::migrate_at(&from, &to, Some("global 10/1m\napi 5/1 minute\n"), T).unwrap_err();
    assert!(matches!(err, Error::Policy(_)), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");

    // The source is not a table.
    let junk = dir.join("junk");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let err = Limiter::migrate_at(&junk, &to, None, T).unwrap_err();
    assert!(matches!(err, Error::NotATable { .. }), "{err}");
    // No source at all.
    let err = Limiter::migrate_at(dir.join("missing"), &to, None, T).unwrap_err();
    assert!(matches!(err, Error::NoTable { .. }), "{err}");

    assert!(!to.exists());
    assert_eq!(entries(&dir), vec!["junk", "old.sluice"]);
    assert_eq!(digest(&from), before);
    assert_eq!(old.superseded(), None);
}

#[test]
fn an_attached_process_sees_the_old_table_superseded() {
    let dir = scratch("superseded");
    let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
    let worker = Limiter::open_file(OLD, &from).unwrap();
    let reader = LimiterBuilder::new()
        .path(&from)
        .read_only(true)
        .open()
        .unwrap();
    assert_eq!(worker.superseded(), None);
    assert_eq!(worker.format_version(), 1);
    Limiter::migrate_at(&from, &to, Some(NEW), T).unwrap();
    let to_abs = std::path::absolute(&to).unwrap();
    assert_eq!(worker.superseded(), Some(to_abs.clone()));
    assert_eq!(reader.superseded(), Some(to_abs.clone()));
    // The worker's handle still works (on the old table) until it reopens.
    assert!(
        worker
            .check_at("k", worker.category("api").unwrap(), T)
            .unwrap()
            .allowed
    );
    // A read-only attach (`sluice stat`) still opens it and says so; an open to record in it
    // is refused, naming the new table; a second migration from it too.
    let late = LimiterBuilder::new()
        .path(&from)
        .read_only(true)
        .open()
        .unwrap();
    assert_eq!(late.superseded(), Some(to_abs.clone()));
    let err = Limiter::attach(&from).unwrap_err();
    assert!(
        err.to_string().contains(&to_abs.display().to_string()),
        "{err}"
    );
    let err = Limiter::migrate_at(&from, dir.join("again.sluice"), None, T).unwrap_err();
    assert!(err.to_string().contains("superseded"), "{err}");
    assert!(!dir.join("again.sluice").exists());
    // The new table is current.
    assert_eq!(Limiter::attach(&to).unwrap().superseded(), None);
}

#[test]
fn migrating_in_place_replaces_the_table_at_its_path() {
    let dir = scratch("inplace");
    let path = dir.join("api.sluice");
    let worker = Limiter::open_file(OLD, &path).unwrap();
    let auth = worker.category("auth").unwrap();
    for i in 0..3 {
        worker.failure_at("mallory", auth, T + i).unwrap();
    }
    let report = Limiter::migrate_at(&path, &path, Some(NEW), T + 10).unwrap();
    assert!(report.in_place);
    assert_eq!(report.locked_keys, 1);
    assert_eq!(
        worker.superseded(),
        Some(std::path::absolute(&path).unwrap())
    );
    // The next open of the path (a reloaded host) gets the new table, with the new policy
    // and the lock.
    let reopened = Limiter::open_file(NEW, &path).unwrap();
    assert_eq!(reopened.superseded(), None);
    let nauth = reopened.category("auth").unwrap();
    assert_eq!(
        reopened.peek_at("mallory", nauth, T + 20).unwrap().status,
        Status::Locked
    );
    assert_eq!(entries(&dir), vec!["api.sluice"]);
}
