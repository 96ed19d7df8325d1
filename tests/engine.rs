//! The per-key engine on states the caller owns decides exactly as the table does: the same
//! random operations on both, the same decisions. Snapshots taken and restored at random
//! points change nothing, and a state dropped once it has expired decides as the kept one.

#[path = "support/policies.rs"]
mod policies;

use std::collections::HashMap;

use policies::policy_text;
use proptest::prelude::*;
use sluice::policy::Policy;
use sluice::{Category, Error, KeyEngine, KeySnapshot, KeyState, Limiter, LockoutSnapshot};

#[derive(Debug, Clone)]
enum Action {
    Check(u8, usize),
    Allow(u8, usize),
    Peek(u8, usize),
    Failure(u8),
    Success(u8),
    Reset(u8, usize),
    Unlock(u8),
    /// Replace the key's state by one restored from its snapshot.
    Restore(u8),
    /// Drop the key's state if it has expired (a host freeing memory).
    Expire(u8),
}

fn action() -> impl Strategy<Value = (Action, i64)> {
    let key = 0u8..4;
    let cat = 0usize..3;
    (
        prop_oneof![
            8 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Check(k, c)),
            2 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Allow(k, c)),
            2 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Peek(k, c)),
            4 => key.clone().prop_map(Action::Failure),
            1 => key.clone().prop_map(Action::Success),
            1 => (key.clone(), cat).prop_map(|(k, c)| Action::Reset(k, c)),
            1 => key.clone().prop_map(Action::Unlock),
            2 => key.clone().prop_map(Action::Restore),
            2 => key.prop_map(Action::Expire),
        ],
        prop_oneof![3 => 0i64..5, 2 => 5i64..60, 1 => 60i64..800],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn key_engine_decides_as_the_table(
        text in policy_text(),
        actions in prop::collection::vec(action(), 1..200),
    ) {
        // A table large enough that no key is ever evicted: then each key's slot is a state
        // of its own, as each KeyState is.
        let policy = Policy::parse(&text).unwrap();
        let big = format!("{}\ncapacity 64", text.lines().filter(|l| !l.starts_with("capacity")).collect::<Vec<_>>().join("\n"));
        let limiter = Limiter::builder(&big).secret([3, 5]).open().unwrap();
        let engine = KeyEngine::from_policy(policy.clone()).unwrap();
        let cats: Vec<Category> = policy.categories.iter().map(|c| engine.category(c).unwrap()).collect();
        let auth = cats[policy.category_id("auth").unwrap()];
        let mut states: HashMap<u8, KeyState> = HashMap::new();
        let mut t = 1_767_225_600_000i64;
        for (i, (a, dt)) in actions.iter().enumerate() {
            t += dt;
            let ncat = cats.len();
            let key = |k: &u8| [b'k', *k];
            match a {
                Action::Check(k, c) => {
                    let s = states.entry(*k).or_insert_with(|| engine.new_state());
                    let got = engine.check(s, cats[c % ncat], t).unwrap();
                    prop_assert_eq!(got, limiter.check_at(key(k), cats[c % ncat], t).unwrap(), "step {} check\n{}", i, text);
                }
                Action::Allow(k, c) => {
                    let s = states.entry(*k).or_insert_with(|| engine.new_state());
                    let got = engine.allow(s, cats[c % ncat], t).unwrap();
                    prop_assert_eq!(got, limiter.allow_at(key(k), cats[c % ncat], t).unwrap(), "step {} allow\n{}", i, text);
                }
                Action::Peek(k, c) => {
                    let fresh = engine.new_state();
                    let s = states.get(k).unwrap_or(&fresh);
                    let got = engine.peek(s, cats[c % ncat], t).unwrap();
                    prop_assert_eq!(got, limiter.peek_at(key(k), cats[c % ncat], t).unwrap(), "step {} peek\n{}", i, text);
                }
                Action::Failure(k) => {
                    let s = states.entry(*k).or_insert_with(|| engine.new_state());
                    let got = engine.failure(s, auth, t).unwrap();
                    prop_assert_eq!(got, limiter.failure_at(key(k), auth, t).unwrap(), "step {} failure\n{}", i, text);
                }
                Action::Success(k) => {
                    if let Some(s) = states.get(k) {
                        engine.success(s, auth, t).unwrap();
                    }
                    limiter.success_at(key(k), auth, t).unwrap();
                }
                Action::Reset(k, c) => {
                    if let Some(s) = states.get(k) {
                        engine.reset(s, cats[c % ncat]).unwrap();
                    }
                    limiter.reset_at(key(k), cats[c % ncat], t).unwrap();
                }
                Action::Unlock(k) => {
                    let table = limiter.unlock_at(key(k), auth, t).unwrap();
                    match states.get(k) {
                        Some(s) => prop_assert_eq!(engine.unlock(s, auth, t).unwrap(), table, "step {} unlock", i),
                        // Dropped as expired, or never seen: nothing was locked.
                        None => prop_assert!(!matches!(table, sluice::Unlock::Unlocked { .. }), "unlocked {:?}", table),
                    }
                }
                Action::Restore(k) => {
                    if let Some(s) = states.get(k) {
                        let snap = engine.snapshot(s);
                        let restored = engine.restore(&snap).unwrap();
                        prop_assert_eq!(engine.snapshot(&restored), snap);
                        states.insert(*k, restored);
                    }
                }
                Action::Expire(k) => {
                    if let Some(s) = states.get(k) {
                        // A state that has expired decides as a new one, in every category.
                        if engine.expires_at(s).is_none_or(|e| e <= t) {
                            for &c in &cats {
                                prop_assert_eq!(engine.peek(s, c, t).unwrap(), engine.peek(&engine.new_state(), c, t).unwrap());
                            }
                            // The table keeps its slot: from here on the two must still agree.
                            states.remove(k);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn snapshots_are_plain_values_and_bad_ones_are_refused() {
    let engine = KeyEngine::new("global 3/1m\nauth 2/1m\nauth lockout 2/1m for 1m..1h").unwrap();
    let auth = engine.category("auth").unwrap();
    let s = engine.new_state();
    let t = 1_700_000_000_000;
    assert_eq!(engine.snapshot(&s), {
        KeySnapshot {
            windows: vec![vec![], vec![]],
            lockouts: vec![LockoutSnapshot::default()],
        }
    });
    assert_eq!(engine.expires_at(&s), None);
    engine.check(&s, auth, t).unwrap();
    engine.check(&s, auth, t + 5).unwrap();
    engine.failure(&s, auth, t + 6).unwrap();
    engine.failure(&s, auth, t + 7).unwrap(); // locks for 1 min
    let snap = engine.snapshot(&s);
    assert_eq!(snap.windows, vec![vec![t, t + 5], vec![t, t + 5]]);
    assert_eq!(
        snap.lockouts,
        vec![LockoutSnapshot {
            failures: vec![],
            locked_until: Some(t + 7 + 60_000),
            level: 1,
        }]
    );
    // The lock ends after a minute; its level is remembered for the maximum ban after that.
    assert_eq!(engine.expires_at(&s), Some(t + 7 + 60_000 + 3_600_000));
    // The words themselves can be kept and given back, for the same policy.
    let copy = engine.state_from_words(&s.words()).unwrap();
    assert_eq!(engine.snapshot(&copy), snap);
    assert!(engine.state_from_words(&[0; 3]).is_none());

    let mut bad = snap.clone();
    bad.windows[0] = vec![t; 4];
    let err = engine.restore(&bad).unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)), "{err}");
    assert!(
        err.to_string().contains("rule 1 holds 4 timestamps"),
        "{err}"
    );
    let mut bad = snap.clone();
    bad.lockouts.clear();
    assert!(engine
        .restore(&bad)
        .unwrap_err()
        .to_string()
        .contains("0 lockouts, where the policy has 2 and 1"));
    let mut bad = snap;
    bad.lockouts[0].locked_until = None;
    assert!(engine
        .restore(&bad)
        .unwrap_err()
        .to_string()
        .contains("level 1 without a lock"));
}
