//! Loom models of the lock-free protocol: every interleaving (up to LOOM_MAX_PREEMPTIONS) of
//! the real engine code, with loom's atomics swapped in by `crate::sync`.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --lib loom`

use loom::sync::Arc;
use loom::thread;

use crate::{Category, Limiter, Status};

const T: i64 = 1_767_225_600_000;

/// Small tables: every index word and slot word is a loom atomic that the model tracks.
fn limiter(policy: &str) -> Arc<Limiter> {
    let policy = if policy.contains("capacity") {
        policy.to_string()
    } else {
        format!("{policy}\ncapacity 2")
    };
    Arc::new(Limiter::builder(&policy).secret([1, 2]).open().unwrap())
}

/// `threads` threads each check `key` once at the same instant; count admissions.
fn race_checks(policy: &'static str, threads: usize, category: &'static str) -> usize {
    let (admitted, live) = race_checks_live(policy, threads, category);
    assert!(live <= 1, "key installed {live} times");
    admitted
}

fn race_checks_live(policy: &'static str, threads: usize, category: &'static str) -> (usize, u64) {
    let l = limiter(policy);
    let cat = l.category(category).unwrap();
    if threads > 2 {
        // Install the key first (with a request long out of the window) so that the model of
        // three threads explores the ring protocol rather than three racing installs.
        assert!(l.check_at("k", cat, T - 3_600_000).unwrap().allowed);
    }
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let l = l.clone();
            thread::spawn(move || l.check_at("k", cat, T + i as i64).unwrap().allowed)
        })
        .collect();
    let admitted = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&a| a)
        .count();
    (admitted, l.stats_at(T).live_keys)
}

#[test]
fn loom_two_threads_one_key_n1_admit_at_most_one() {
    loom::model(|| {
        let admitted = race_checks("global 1/1m", 2, "global");
        assert!(admitted <= 1, "admitted {admitted}");
    });
}

#[test]
fn loom_allow_racing_check_one_key_n1_admit_at_most_one() {
    // allow_at decides on the same path as check_at and returns before the report: racing a
    // check on a key with one place left, at most one is admitted, `passed` counts exactly
    // the admitted ones and `limited` every refusal, including one that lost the race to
    // install the new key.
    loom::model(|| {
        let l = limiter("global 1/1m");
        let la = l.clone();
        let h = thread::spawn(move || la.allow_at("k", Category::GLOBAL, T).unwrap());
        let checked = l.check_at("k", Category::GLOBAL, T).unwrap().allowed;
        let allowed = h.join().unwrap();
        assert!(!(checked && allowed), "both admitted");
        let r = l.rule_stats(0).unwrap();
        assert_eq!(r.passed, u64::from(checked) + u64::from(allowed));
        assert_eq!(r.passed + r.limited, 2);
    });
}

#[test]
fn loom_three_threads_one_key_n2_admit_at_most_two() {
    loom::model(|| {
        let admitted = race_checks("global 2/1m", 3, "global");
        assert!(admitted <= 2, "admitted {admitted}");
    });
}

#[test]
fn loom_two_threads_uncontended_history_then_race_n2() {
    // One request already logged, then two race for the one remaining place.
    loom::model(|| {
        let l = limiter("global 2/1m");
        assert!(l.check_at("k", Category::GLOBAL, T).unwrap().allowed);
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                thread::spawn(move || l.check_at("k", Category::GLOBAL, T + 1).unwrap().allowed)
            })
            .collect();
        let admitted = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&a| a)
            .count();
        assert!(admitted <= 1);
        // And nothing more fits afterwards.
        assert!(!l.check_at("k", Category::GLOBAL, T + 2).unwrap().allowed);
    });
}

#[test]
fn loom_multi_rule_claims_are_all_or_nothing() {
    // Thread A checks `api` (global + api rules), thread B checks `global` only. With global
    // 1/1m at most one of them is admitted, and the api rule logs at most one request.
    loom::model(|| {
        let l = limiter("global 1/1m\napi 1/1m");
        let api = l.category("api").unwrap();
        let la = l.clone();
        let a = thread::spawn(move || la.check_at("k", api, T).unwrap().allowed);
        let lb = l.clone();
        let b = thread::spawn(move || lb.check_at("k", Category::GLOBAL, T).unwrap().allowed);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(!(a && b), "both admitted under global 1/1m");
        let st = l.stats_at(T);
        assert!(st.rules[0].passed <= 1 && st.rules[1].passed <= 1);
    });
}

#[test]
fn loom_new_key_claimed_by_two_threads_gets_one_slot() {
    loom::model(|| {
        let l = limiter("global 5/1m\ncapacity 4");
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                thread::spawn(move || l.check_at("new", Category::GLOBAL, T).unwrap())
            })
            .collect();
        let ds: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let live = l.stats_at(T).live_keys;
        assert!(live <= 1, "the key was installed {live} times");
        // Whatever was admitted is logged in that one slot. (Both may be refused, when each
        // sees the other's reservation: stricter, never looser.)
        let admitted = ds.iter().filter(|d| d.allowed).count() as u32;
        if live == 0 {
            assert_eq!(admitted, 0, "admitted without a slot: {ds:?}");
        } else {
            let d = l.peek_at("new", Category::GLOBAL, T).unwrap();
            assert_eq!(d.remaining, 5 - admitted - 1, "decisions {ds:?}");
        }
    });
}

#[test]
fn loom_racing_failures_lock_once() {
    loom::model(|| {
        let l = limiter("auth lockout 2/1m for 1m..1h");
        let auth = l.category("auth").unwrap();
        l.failure_at("k", auth, T).unwrap();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                thread::spawn(move || l.failure_at("k", auth, T + 1).unwrap().status)
            })
            .collect();
        let st: Vec<Status> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(st.contains(&Status::Locked));
        assert_eq!(l.stats_at(T + 1).rules[0].lockouts, 1, "locked twice");
        let d = l.check_at("k", auth, T + 2).unwrap();
        assert_eq!((d.status, d.retry_after), (Status::Locked, 60));
    });
}

#[test]
fn loom_a_lock_is_never_lost_to_an_eviction() {
    // Capacity 1: thread A's failure locks key "a" while thread B's new key "b" wants the
    // only slot. Whatever the interleaving: either A's failure locked "a" and "a" ends locked
    // (no eviction lost the lock), or "b" evicted "a" before it — forgetting its first
    // failure, as an eviction does — and A's failure was the first of a new "a" (or found
    // the only slot being installed for "b").
    loom::model(|| {
        let l = limiter("auth lockout 2/1m for 1m\ncapacity 1");
        let auth = l.category("auth").unwrap();
        l.failure_at("a", auth, T).unwrap();
        let la = l.clone();
        let a = thread::spawn(move || la.failure_at("a", auth, T + 1).unwrap());
        let lb = l.clone();
        let b = thread::spawn(move || lb.check_at("b", auth, T + 1).unwrap().status);
        let sa = a.join().unwrap();
        b.join().unwrap();
        if sa.status == Status::Locked {
            // ("b" may have been admitted meanwhile: its install can come before the lock,
            // which then moves to a new slot of "a".)
            assert_eq!(l.peek_at("a", auth, T + 2).unwrap().status, Status::Locked);
        } else {
            // After the eviction, A's failure either started a new "a" (evicting "b" in
            // turn) or met "b" being installed in the only slot (full, nothing recorded).
            assert!(
                matches!(
                    (sa.status, sa.remaining),
                    (Status::Passed, 1) | (Status::Full, 0)
                ),
                "{sa:?}"
            );
            assert!(
                l.stats_at(T + 1).evictions >= 1,
                "a's failure forgotten without an eviction"
            );
        }
    });
}

#[test]
fn loom_new_key_in_a_one_slot_table_is_installed_once() {
    // The only position is where the other thread installs the key: the second thread must
    // find it there, never take it over as an eviction victim.
    loom::model(|| {
        let (admitted, live) = race_checks_live("global 1/1m\ncapacity 1", 2, "global");
        assert!(admitted <= 1, "admitted {admitted}");
        assert!(live <= 1);
    });
}

/// A limiter whose reservations are abandoned the moment they are made.
fn limiter_abandoning(policy: &str) -> Arc<Limiter> {
    Arc::new(
        Limiter::builder(policy)
            .secret([1, 2])
            .open()
            .unwrap()
            .abandon_claims_at_once(),
    )
}

#[test]
fn loom_takeovers_of_live_installs_never_install_a_key_twice() {
    // Each thread may take over the other's reservation mid-install (as if the owner had been
    // killed) while the owner goes on: still one slot for the key, at most one admission.
    loom::model(|| {
        let l = limiter_abandoning("global 1/1m\ncapacity 2");
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let l = l.clone();
                thread::spawn(move || l.check_at("k", Category::GLOBAL, T + i).unwrap().allowed)
            })
            .collect();
        let admitted = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&a| a)
            .count();
        assert!(admitted <= 1, "admitted {admitted}");
        assert!(l.stats_at(T).live_keys <= 1);
        if admitted == 1 {
            assert!(!l.check_at("k", Category::GLOBAL, T + 2).unwrap().allowed);
        }
    });
}

#[test]
fn loom_a_stale_owner_never_clears_its_successor() {
    // Two new keys with the same home in a table of two slots: one thread's install may be
    // taken over by the other while it is still running. Whichever key ends up in that slot
    // keeps what it logged, and the overtaken thread installs its key in the other slot
    // rather than evicting.
    loom::model(|| {
        let l = limiter_abandoning("global 1/1m\ncapacity 2");
        let home = l.home_of("a");
        let b: &'static str = ["b", "c", "d", "e", "f", "g", "h", "i", "j"]
            .into_iter()
            .find(|k| l.home_of(k) == home)
            .expect("a key with the same home");
        let la = l.clone();
        let ta = thread::spawn(move || la.check_at("a", Category::GLOBAL, T).unwrap().allowed);
        let lb = l.clone();
        let tb = thread::spawn(move || lb.check_at(b, Category::GLOBAL, T).unwrap().allowed);
        let (a, b_admitted) = (ta.join().unwrap(), tb.join().unwrap());
        for (key, admitted) in [("a", a), (b, b_admitted)] {
            // A key that was admitted and holds a slot must still have its request logged.
            if admitted && l.holds_slot(key) {
                let d = l.peek_at(key, Category::GLOBAL, T + 1).unwrap();
                assert!(!d.allowed, "{key}'s request was erased by a stale install");
            }
        }
    });
}

/// What a thread does to key "a" while another thread's new key "b" takes "a"'s slot over.
#[derive(Clone, Copy, Debug)]
enum Clear {
    Success,
    Reset,
    Unlock,
}

fn clear(l: &Limiter, op: Clear, key: &str, t: i64) {
    let auth = l.category("auth").unwrap();
    match op {
        Clear::Success => l.success_at(key, auth, t).unwrap(),
        Clear::Reset => l.reset_at(key, auth, t).unwrap(),
        Clear::Unlock => {
            l.unlock_at(key, auth, t).unwrap();
        }
    }
}

/// One slot: "a" holds it, its lock over but its level remembered. Thread 1 clears "a"
/// (success, reset or unlock) while thread 2's failure of the new key "b" evicts "a" and locks
/// "b". Whatever the interleaving, a clear aimed at "a" never erases "b"'s lock or failures:
/// every clearing write is fenced by the slot's owner.
fn takeover_racing(op: Clear) {
    loom::model(move || {
        let l = limiter("auth lockout 1/1m for 1m..1h\ncapacity 1");
        let auth = l.category("auth").unwrap();
        assert_eq!(l.failure_at("a", auth, T).unwrap().status, Status::Locked);
        let t = T + 120_000; // "a"'s lock has ended; its level is still remembered
        let l1 = l.clone();
        let h = thread::spawn(move || clear(&l1, op, "a", t));
        let b = l.failure_at("b", auth, t).unwrap();
        h.join().unwrap();
        assert_eq!(b.status, Status::Locked, "{op:?}: b's failure did not lock");
        let d = l.peek_at("b", auth, t + 1).unwrap();
        assert_eq!(
            (d.status, d.retry_after),
            (Status::Locked, 60),
            "{op:?}: b lost its lock"
        );
        assert_eq!(l.stats_at(t).live_keys, 1);
    });
}

#[test]
fn loom_a_success_racing_a_takeover_loses_no_lock() {
    takeover_racing(Clear::Success);
}

#[test]
fn loom_a_reset_racing_a_takeover_loses_no_lock() {
    takeover_racing(Clear::Reset);
}

#[test]
fn loom_an_unlock_racing_a_takeover_loses_no_lock() {
    takeover_racing(Clear::Unlock);
}

#[test]
fn loom_a_success_keeps_the_lock_a_new_key_cannot_take() {
    // "a" is locked: thread 1's success of "a" keeps its lock, and thread 2's new key "b"
    // finds the only slot locked (full), whatever the interleaving.
    loom::model(|| {
        let l = limiter("auth lockout 1/1m for 1m\ncapacity 1");
        let auth = l.category("auth").unwrap();
        assert_eq!(l.failure_at("a", auth, T).unwrap().status, Status::Locked);
        let l1 = l.clone();
        let h = thread::spawn(move || clear(&l1, Clear::Success, "a", T + 1));
        let b = l.failure_at("b", auth, T + 1).unwrap();
        h.join().unwrap();
        assert_eq!(b.status, Status::Full);
        assert_eq!(l.peek_at("a", auth, T + 2).unwrap().status, Status::Locked);
    });
}
