//! A key's whole life: however many times its logs are cleared (successes, resets, slots taken
//! over by other keys, lockouts clearing failures), every decision stays the serial model's.
//!
//! A log's generation is a small field of every entry, and entries are never rewritten by a
//! clear; these tests run the clears past many wraps of that field and compare each decision
//! with `tests/support/model.rs`.

#[path = "support/model.rs"]
mod model;

use model::{Model, Op};
use sluice::policy::Policy;
use sluice::{Category, Limiter, Status};

const T0: i64 = 1_767_225_600_000;

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_user_is_not_locked_out_early_after_many_good_logins() {
    let l = Limiter::open("auth lockout 5/15m for 15m").unwrap();
    let auth = l.category("auth").unwrap();
    let mut t = T0;
    // Two failed logins, then many good ones in a row.
    for left in [4, 3] {
        t += 10;
        assert_eq!(l.failure_at("bob", auth, t).unwrap().remaining, left);
    }
    for _ in 0..1_000 {
        l.success_at("bob", auth, t).unwrap();
    }
    t += 10;
    assert_eq!(l.failure_at("bob", auth, t).unwrap().remaining, 4);
    // Every good login clears the failure log; with a failure between them each clear is real.
    for _ in 0..1_000 {
        t += 10;
        assert_eq!(l.failure_at("alice", auth, t).unwrap().remaining, 4);
        l.success_at("alice", auth, t).unwrap();
    }
    for left in [4, 3, 2, 1] {
        t += 10;
        let d = l.failure_at("alice", auth, t).unwrap();
        assert_eq!((d.status, d.remaining), (Status::Passed, left));
    }
    t += 10;
    assert_eq!(
        l.failure_at("alice", auth, t).unwrap().status,
        Status::Locked
    );
}

#[test]
fn resets_never_leave_an_old_request_behind() {
    let l = Limiter::open("global 4/1h").unwrap();
    let g = Category::GLOBAL;
    let mut t = T0;
    for _ in 0..3 {
        t += 1;
        assert!(l.check_at("k", g, t).unwrap().allowed);
    }
    for _ in 0..1_000 {
        l.reset_at("j", g, t).unwrap(); // a key never seen: nothing changes
    }
    for _ in 0..1_000 {
        t += 1;
        l.reset_at("k", g, t).unwrap();
        assert_eq!(
            l.check_at("k", g, t).unwrap().remaining,
            3,
            "one request after a reset"
        );
    }
    l.reset_at("k", g, t).unwrap();
    for left in [3, 2, 1, 0] {
        t += 1;
        let d = l.check_at("k", g, t).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
    }
    assert!(!l.check_at("k", g, t + 1).unwrap().allowed);
}

/// Old entries are read back only where no later request wrote over them: a ring filled once,
/// then many incarnations that use only its first entry, then one that uses it all. Every
/// number of clears in between up to 1,100 (past several wraps of any small generation).
#[test]
fn a_full_ring_then_any_number_of_clears_reads_nothing_old() {
    let l = Limiter::builder(
        "global 4/1h
auth lockout 5/1h for 1m",
    )
    .secret([5, 7])
    .open()
    .unwrap();
    let (g, auth) = (Category::GLOBAL, l.category("auth").unwrap());
    let mut t = T0;
    for clears in 0..1_100u32 {
        let key = format!("k{clears}");
        // Fill the ring and the failure log.
        for _ in 0..4 {
            t += 1;
            assert!(l.check_at(&key, g, t).unwrap().allowed);
            assert_eq!(l.failure_at(&key, auth, t).unwrap().status, Status::Passed);
        }
        // `clears` incarnations that log one request and one failure each.
        for _ in 0..clears {
            t += 1;
            l.reset_at(&key, g, t).unwrap();
            l.success_at(&key, auth, t).unwrap();
            assert_eq!(l.check_at(&key, g, t).unwrap().remaining, 3);
            assert_eq!(l.failure_at(&key, auth, t).unwrap().remaining, 4);
        }
        l.reset_at(&key, g, t).unwrap();
        l.success_at(&key, auth, t).unwrap();
        // A fresh window and a fresh failure log, whole.
        for left in [3, 2, 1, 0] {
            t += 1;
            let d = l.check_at(&key, g, t).unwrap();
            assert!(
                d.allowed && d.remaining == left,
                "after {clears} clears: {d:?}"
            );
            let f = l.failure_at(&key, auth, t).unwrap();
            assert_eq!(f.remaining, left + 1, "after {clears} clears: {f:?}");
        }
        assert!(!l.check_at(&key, g, t + 1).unwrap().allowed);
        assert_eq!(
            l.failure_at(&key, auth, t + 1).unwrap().status,
            Status::Locked
        );
    }
}

#[test]
fn slot_takeovers_never_hand_one_clients_history_to_another() {
    // One slot: every new key takes the slot over from the last, clearing every log. Each
    // key's decisions must be those of a key never seen before.
    let l = Limiter::open("global 3/1h\ncapacity 1").unwrap();
    let g = Category::GLOBAL;
    let mut t = T0;
    for i in 0..2_000u32 {
        let key = format!("client-{i}");
        let n = 1 + i % 3;
        for j in 0..n {
            t += 1;
            let d = l.check_at(&key, g, t).unwrap();
            assert!(d.allowed, "{key} request {j}");
            assert_eq!(d.remaining, 2 - j, "{key} request {j}");
        }
    }
    assert_eq!(l.stats().evictions, 1_999);
}

/// ≥ 100,000 clears of one key's logs — successes, resets, takeovers of its slot and lockouts
/// — between bursts of checks and failures, beside two other keys that take its slot over now
/// and then: every decision equals the serial model's.
#[test]
fn a_hundred_thousand_clears_change_no_decision() {
    let text = "global 4/50ms\napi 3/40ms strict\napi 6/200ms\nauth 2/30ms\n\
                auth lockout 3/100ms for 20ms..80ms\ncapacity 2";
    let policy = Policy::parse(text).unwrap();
    let limiter = Limiter::builder(text).secret([11, 13]).open().unwrap();
    let mut model = Model::new(policy.clone());
    let cats: Vec<Category> = (policy.categories.iter())
        .map(|name| limiter.category(name).unwrap())
        .collect();
    let auth = policy.category_id("auth").unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut t = T0;
    // Clears of key "a"'s logs, and steps.
    let (mut clears, mut steps) = (0u64, 0u64);
    let mut takeovers = 0u64;
    while clears < 100_000 {
        steps += 1;
        // Mostly "a"; "b" often, "c" now and then, so that slots are taken over.
        let key: &[u8] = match rng.below(40) {
            0..=23 => b"a",
            24..=37 => b"b",
            _ => b"c",
        };
        let is_a = key == b"a";
        let held = model.keys.contains_key(key);
        let c = rng.below(cats.len() as u64) as usize;
        t += 1 + rng.below(3) as i64;
        let before = model.evictions + model.reclaimed;
        match rng.below(10) {
            0..=3 => {
                // A burst of checks.
                for _ in 0..1 + rng.below(4) {
                    let got = limiter.check_at(key, cats[c], t).unwrap();
                    let want = model.decide(key, c, t, Op::Check);
                    assert_eq!(got, want, "step {steps} check {key:?} cat {c}");
                }
            }
            4..=5 => {
                for _ in 0..1 + rng.below(3) {
                    let locks = model.lockouts.iter().sum::<u64>();
                    let got = limiter.failure_at(key, cats[auth], t).unwrap();
                    let want = model.failure(key, auth, t);
                    assert_eq!(got, want, "step {steps} failure {key:?}");
                    if is_a {
                        // A lockout clears the failure log.
                        clears += model.lockouts.iter().sum::<u64>() - locks;
                    }
                }
            }
            6..=7 => {
                limiter.success_at(key, cats[auth], t).unwrap();
                model.success(key, auth);
                clears += u64::from(is_a && held);
            }
            _ => {
                limiter.reset_at(key, cats[c], t).unwrap();
                model.reset(key, c);
                clears += u64::from(is_a && held);
            }
        }
        // Each slot taken over clears every log of the slot: "a"'s, when "a" moves in.
        let moved = model.evictions + model.reclaimed - before;
        takeovers += moved;
        if is_a {
            clears += moved;
        }
        let got = limiter.peek_at(key, cats[c], t).unwrap();
        assert_eq!(got, model.decide(key, c, t, Op::Peek), "step {steps} peek");
    }
    assert!(takeovers > 10_000, "takeovers: {takeovers}");
}
