//! Differential test: the engine against the serial reference model of `tests/support/model.rs`.
//!
//! Capacities here are at most 16, the size of a key's neighbourhood, so the engine's eviction
//! order is the model's global one; every operation happens at a later time than the last, so
//! "least recently active" has no ties.

#[path = "support/model.rs"]
mod model;
#[path = "support/policies.rs"]
mod policies;

use model::{Model, Op};
use policies::policy_text;
use proptest::prelude::*;
use sluice::policy::Policy;
use sluice::{Category, Limiter};

#[derive(Debug, Clone)]
enum Action {
    Check(u8, usize),
    /// `allow_at`: the check's decision (recorded and counted as one) without the report.
    Allow(u8, usize),
    Peek(u8, usize),
    Failure(u8),
    Success(u8),
    Reset(u8, usize),
    /// A long run on one key: `n` times a check and a failure, then a success or a reset —
    /// many clears of the same logs, past every wrap of their generations.
    Churn(u8, usize, u16),
}

fn action() -> impl Strategy<Value = (Action, i64)> {
    let key = 0u8..6;
    let cat = 0usize..3;
    (
        prop_oneof![
            6 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Check(k, c)),
            3 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Allow(k, c)),
            2 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Peek(k, c)),
            3 => key.clone().prop_map(Action::Failure),
            1 => key.clone().prop_map(Action::Success),
            1 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Reset(k, c)),
            1 => (0u8..2, cat, 200u16..700).prop_map(|(k, c, n)| Action::Churn(k, c, n)),
        ],
        prop_oneof![3 => 1i64..5, 2 => 5i64..60, 1 => 60i64..500],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_serial_model(
        text in policy_text(),
        actions in prop::collection::vec(action(), 1..150),
    ) {
        let policy = Policy::parse(&text).unwrap();
        let limiter = Limiter::builder(&text).secret([3, 5]).open().unwrap();
        let cats: Vec<Category> = policy.categories.iter().map(|c| limiter.category(c).unwrap()).collect();
        let mut model = Model::new(policy.clone());
        let auth = policy.category_id("auth").unwrap();
        let mut t = 1_767_225_600_000i64;
        for (i, (a, dt)) in actions.iter().enumerate() {
            t += dt;
            let ncat = cats.len();
            match a {
                Action::Check(k, c) => {
                    let c = c % ncat;
                    let key = [b'k', *k];
                    let got = limiter.check_at(key, cats[c], t).unwrap();
                    let want = model.decide(&key, c, t, Op::Check);
                    prop_assert_eq!(got, want, "step {} check key {} cat {} at +{}\n{}", i, k, c, t - 1_767_225_600_000, text);
                }
                Action::Allow(k, c) => {
                    let c = c % ncat;
                    let key = [b'k', *k];
                    let got = limiter.allow_at(key, cats[c], t).unwrap();
                    let want = model.decide(&key, c, t, Op::Check).allowed;
                    prop_assert_eq!(got, want, "step {} allow key {} cat {}\n{}", i, k, c, text);
                }
                Action::Peek(k, c) => {
                    let c = c % ncat;
                    let key = [b'k', *k];
                    let got = limiter.peek_at(key, cats[c], t).unwrap();
                    let want = model.decide(&key, c, t, Op::Peek);
                    prop_assert_eq!(got, want, "step {} peek key {} cat {}\n{}", i, k, c, text);
                }
                Action::Failure(k) => {
                    let key = [b'k', *k];
                    let got = limiter.failure_at(key, cats[auth], t).unwrap();
                    let want = model.failure(&key, auth, t);
                    prop_assert_eq!(got, want, "step {} failure key {}\n{}", i, k, text);
                }
                Action::Success(k) => {
                    let key = [b'k', *k];
                    limiter.success_at(key, cats[auth], t).unwrap();
                    model.success(&key, auth);
                }
                Action::Reset(k, c) => {
                    let c = c % ncat;
                    let key = [b'k', *k];
                    limiter.reset_at(key, cats[c], t).unwrap();
                    model.reset(&key, c);
                }
                Action::Churn(k, c, n) => {
                    let c = c % ncat;
                    let key = [b'k', *k];
                    for j in 0..*n {
                        t += 1;
                        let got = limiter.check_at(key, cats[c], t).unwrap();
                        let want = model.decide(&key, c, t, Op::Check);
                        prop_assert_eq!(got, want, "step {} churn {} check key {} cat {}\n{}", i, j, k, c, text);
                        let got = limiter.failure_at(key, cats[auth], t).unwrap();
                        prop_assert_eq!(got, model.failure(&key, auth, t), "step {} churn {} failure\n{}", i, j, text);
                        if j % 2 == 0 {
                            limiter.success_at(key, cats[auth], t).unwrap();
                            model.success(&key, auth);
                        } else {
                            limiter.reset_at(key, cats[c], t).unwrap();
                            model.reset(&key, c);
                        }
                    }
                }
            }
        }
        let st = limiter.stats_at(t);
        prop_assert_eq!(st.live_keys, model.keys.len() as u64);
        prop_assert_eq!(st.evictions, model.evictions);
        prop_assert_eq!(st.reclaimed, model.reclaimed);
        for r in 0..policy.rules.len() {
            prop_assert_eq!(st.rules[r].passed, model.passed[r], "passed of rule {}", r);
            prop_assert_eq!(st.rules[r].limited, model.limited[r], "limited of rule {}", r);
            prop_assert_eq!(st.rules[r].dry_run_limited, model.dry[r]);
            prop_assert_eq!(st.rules[r].locked, model.locked[r]);
            prop_assert_eq!(st.rules[r].lockouts, model.lockouts[r]);
        }
    }
}
