//! Differential test: the engine against a serial reference model written for clarity.
//!
//! The model keeps, per key and rule, a `VecDeque` of every logged timestamp and counts the
//! ones in the window; per key and lockout, a deque of failures, the lock's end and its level.
//! Capacities here are at most 16, the size of a key's neighbourhood, so the engine's eviction
//! order ("expired first, then least recently active, never an active lockout") is global and
//! the model can state it directly. Every operation happens at a distinct, non-decreasing time,
//! so "least recently active" has no ties.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;
use sluice::policy::{Policy, RuleKind, WhenFull};
use sluice::{Category, Decision, Limiter, Status};

fn ceil_secs(ms: i64) -> i64 {
    if ms <= 0 {
        0
    } else {
        (ms + 999) / 1000
    }
}

#[derive(Default, Clone)]
struct KeyState {
    logs: Vec<VecDeque<i64>>,      // per rule index (window rules only used)
    failures: Vec<VecDeque<i64>>,  // per rule index (lockouts only used)
    lock: Vec<Option<(i64, u32)>>, // per rule index: (until, level)
    last_active: i64,
}

struct Model {
    policy: Policy,
    keys: HashMap<Vec<u8>, KeyState>,
    passed: Vec<u64>,
    limited: Vec<u64>,
    dry: Vec<u64>,
    locked: Vec<u64>,
    lockouts: Vec<u64>,
    evictions: u64,
    reclaimed: u64,
}

enum Op {
    Check,
    Peek,
}

impl Model {
    fn new(policy: Policy) -> Model {
        let n = policy.rules.len();
        Model {
            policy,
            keys: HashMap::new(),
            passed: vec![0; n],
            limited: vec![0; n],
            dry: vec![0; n],
            locked: vec![0; n],
            lockouts: vec![0; n],
            evictions: 0,
            reclaimed: 0,
        }
    }

    fn fresh(&self) -> KeyState {
        let n = self.policy.rules.len();
        KeyState {
            logs: vec![VecDeque::new(); n],
            failures: vec![VecDeque::new(); n],
            lock: vec![None; n],
            last_active: 0,
        }
    }

    /// Window rules that apply to category `c`: global ones, then c's own, in policy order.
    fn rules_of(&self, c: usize) -> Vec<usize> {
        let name = &self.policy.categories[c];
        let mut v: Vec<usize> = self
            .policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.kind, RuleKind::Window(_)) && r.name == "global")
            .map(|(i, _)| i)
            .collect();
        if c != 0 {
            v.extend(
                self.policy
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| matches!(r.kind, RuleKind::Window(_)) && &r.name == name)
                    .map(|(i, _)| i),
            );
        }
        v
    }

    fn lockout_of(&self, c: usize) -> Option<usize> {
        let name = &self.policy.categories[c];
        self.policy
            .rules
            .iter()
            .position(|r| matches!(r.kind, RuleKind::Lockout(_)) && &r.name == name)
    }

    fn window(&self, r: usize) -> (u32, i64, bool, bool) {
        match &self.policy.rules[r].kind {
            RuleKind::Window(w) => (w.limit, w.window_ms, w.strict, w.dry_run),
            _ => unreachable!(),
        }
    }

    fn lockout(&self, r: usize) -> (u32, i64, i64, Option<i64>) {
        match &self.policy.rules[r].kind {
            RuleKind::Lockout(l) => (l.failures, l.window_ms, l.ban_ms, l.max_ban_ms),
            _ => unreachable!(),
        }
    }

    fn is_locked(&self, k: &KeyState, t: i64) -> bool {
        k.lock.iter().any(|l| matches!(l, Some((u, _)) if *u > t))
    }

    fn is_expired(&self, k: &KeyState, t: i64) -> bool {
        self.policy
            .rules
            .iter()
            .enumerate()
            .all(|(r, rule)| match &rule.kind {
                RuleKind::Window(w) => k.logs[r].back().is_none_or(|&ts| ts <= t - w.window_ms),
                RuleKind::Lockout(l) => {
                    k.failures[r].back().is_none_or(|&ts| ts <= t - l.window_ms)
                        && k.lock[r].is_none_or(|(u, _)| u + l.max_ban_ms.unwrap_or(l.ban_ms) <= t)
                }
            })
    }

    /// Make sure `key` has state, evicting if the table is full. `false`: no room.
    fn install(&mut self, key: &[u8], t: i64) -> bool {
        if self.keys.contains_key(key) {
            return true;
        }
        if self.keys.len() as u64 >= self.policy.capacity {
            let victim = self
                .keys
                .iter()
                .filter(|(_, k)| !self.is_locked(k, t))
                .map(|(name, k)| (!self.is_expired(k, t), k.last_active, name.clone()))
                .min();
            let Some((unexpired, _, name)) = victim else {
                return false;
            };
            if unexpired {
                self.evictions += 1;
            } else {
                self.reclaimed += 1;
            }
            self.keys.remove(&name);
        }
        let mut fresh = self.fresh();
        fresh.last_active = t;
        self.keys.insert(key.to_vec(), fresh);
        true
    }

    fn full(&self, t: i64) -> Decision {
        let allowed = self.policy.when_full == WhenFull::Allow;
        Decision {
            allowed,
            status: Status::Full,
            limit: 0,
            remaining: 0,
            reset: ceil_secs(t),
            reset_after: 0,
            retry_after: if allowed { 0 } else { 1 },
            rule: None,
            window_ms: 0,
        }
    }

    fn locked_decision(&self, r: usize, until: i64, t: i64) -> Decision {
        let (f, d, _, _) = self.lockout(r);
        let rest = ceil_secs(until - t).max(1) as u32;
        Decision {
            allowed: false,
            status: Status::Locked,
            limit: f,
            remaining: 0,
            reset: ceil_secs(until),
            reset_after: rest,
            retry_after: rest,
            rule: Some(r),
            window_ms: d,
        }
    }

    fn in_window(q: &VecDeque<i64>, t: i64, w: i64) -> (u32, Option<i64>) {
        let v: Vec<i64> = q.iter().copied().filter(|&ts| ts > t - w).collect();
        (v.len() as u32, v.first().copied())
    }

    fn admitted(r: usize, limit: u32, w: i64, count: u32, oldest: i64, t: i64) -> Decision {
        Decision {
            allowed: true,
            status: Status::Passed,
            limit,
            remaining: limit.saturating_sub(count),
            reset: ceil_secs(oldest + w),
            reset_after: ceil_secs(oldest + w - t) as u32,
            retry_after: 0,
            rule: Some(r),
            window_ms: w,
        }
    }

    fn refused(r: usize, limit: u32, w: i64, q: &VecDeque<i64>, t: i64) -> Decision {
        // The N-th most recent logged request: when it leaves the window, this rule admits
        // again and `remaining` grows (strict rules may log more than N in a window).
        let nth = q[q.len() - limit as usize];
        let reset_ms = nth + w;
        Decision {
            allowed: false,
            status: Status::Limited,
            limit,
            remaining: 0,
            reset: ceil_secs(reset_ms),
            reset_after: ceil_secs(reset_ms - t) as u32,
            retry_after: ceil_secs(nth + w - t).max(1) as u32,
            rule: Some(r),
            window_ms: w,
        }
    }

    fn decide(&mut self, key: &[u8], c: usize, t: i64, op: Op) -> Decision {
        let record = matches!(op, Op::Check);
        if record {
            if !self.install(key, t) {
                return self.full(t);
            }
            self.keys.get_mut(key).unwrap().last_active = t;
        }
        let rules = self.rules_of(c);
        let Some(mut k) = self.keys.get(key).cloned() else {
            // peek of an unknown key: every log is empty
            let best = rules
                .iter()
                .map(|&r| {
                    let (n, w, _, _) = self.window(r);
                    Model::admitted(r, n, w, 1, t, t)
                })
                .fold(None::<Decision>, |b, d| match b {
                    Some(b) if b.remaining <= d.remaining => Some(b),
                    _ => Some(d),
                });
            return best.unwrap_or_else(|| no_rule(t));
        };
        if let Some(lr) = self.lockout_of(c) {
            if let Some((until, _)) = k.lock[lr].filter(|(u, _)| *u > t) {
                if record {
                    self.locked[lr] += 1;
                }
                return self.locked_decision(lr, until, t);
            }
        }
        let admits: Vec<bool> = rules
            .iter()
            .map(|&r| {
                let (n, w, _, _) = self.window(r);
                Model::in_window(&k.logs[r], t, w).0 < n
            })
            .collect();
        let refused = rules
            .iter()
            .zip(&admits)
            .any(|(&r, &a)| !a && !self.window(r).3);
        if refused {
            let mut best: Option<Decision> = None;
            for (&r, &a) in rules.iter().zip(&admits) {
                let (n, w, strict, dry) = self.window(r);
                if a {
                    continue;
                }
                if record && strict {
                    k.logs[r].push_back(t);
                }
                if dry {
                    continue;
                }
                if record {
                    self.limited[r] += 1;
                }
                let d = Model::refused(r, n, w, &k.logs[r], t);
                if best.is_none_or(|b| d.retry_after > b.retry_after) {
                    best = Some(d);
                }
            }
            if record {
                self.keys.insert(key.to_vec(), k);
            }
            return best.unwrap();
        }
        // Admitted (or would be).
        let mut best: Option<Decision> = None;
        let mut dry: Option<Decision> = None;
        for (&r, &a) in rules.iter().zip(&admits) {
            let (n, w, strict, _) = self.window(r);
            if !a {
                if record {
                    if strict {
                        k.logs[r].push_back(t);
                    }
                    self.dry[r] += 1;
                }
                if dry.is_none() {
                    let mut d = Model::refused(r, n, w, &k.logs[r], t);
                    d.allowed = true;
                    d.status = Status::DryRunLimited;
                    d.retry_after = 0;
                    dry = Some(d);
                }
                continue;
            }
            let d = if record {
                k.logs[r].push_back(t);
                self.passed[r] += 1;
                let (count, oldest) = Model::in_window(&k.logs[r], t, w);
                Model::admitted(r, n, w, count, oldest.unwrap(), t)
            } else {
                let (count, oldest) = Model::in_window(&k.logs[r], t, w);
                Model::admitted(r, n, w, count + 1, oldest.map_or(t, |o| o.min(t)), t)
            };
            if best.is_none_or(|b| d.remaining < b.remaining) {
                best = Some(d);
            }
        }
        if record {
            self.keys.insert(key.to_vec(), k);
        }
        dry.or(best).unwrap_or_else(|| no_rule(t))
    }

    fn failure(&mut self, key: &[u8], c: usize, t: i64) -> Decision {
        let lr = self.lockout_of(c).unwrap();
        let (f, d, ban, max) = self.lockout(lr);
        if !self.install(key, t) {
            return self.full(t);
        }
        let k = self.keys.get_mut(key).unwrap();
        k.last_active = t;
        if let Some((until, _)) = k.lock[lr].filter(|(u, _)| *u > t) {
            return self.locked_decision(lr, until, t);
        }
        k.failures[lr].push_back(t);
        let (count, oldest) = Model::in_window(&k.failures[lr], t, d);
        if count < f {
            return Model::admitted(lr, f, d, count, oldest.unwrap(), t);
        }
        let forget = max.unwrap_or(ban);
        let level = match k.lock[lr] {
            Some((u, level)) if t < u + forget => level,
            _ => 0,
        };
        let this_ban = match max {
            None => ban,
            Some(m) => ban.saturating_mul(1i64 << level.min(40)).min(m),
        };
        k.lock[lr] = Some((t + this_ban, level + 1));
        k.failures[lr].clear();
        self.lockouts[lr] += 1;
        self.locked_decision(lr, t + this_ban, t)
    }

    fn success(&mut self, key: &[u8], c: usize) {
        let lr = self.lockout_of(c).unwrap();
        if let Some(k) = self.keys.get_mut(key) {
            k.failures[lr].clear();
        }
    }

    fn reset(&mut self, key: &[u8], c: usize) {
        let rules = self.rules_of(c);
        let lr = self.lockout_of(c);
        if let Some(k) = self.keys.get_mut(key) {
            for r in rules {
                k.logs[r].clear();
            }
            if let Some(lr) = lr {
                k.failures[lr].clear();
                k.lock[lr] = None;
            }
        }
    }
}

fn no_rule(t: i64) -> Decision {
    Decision {
        allowed: true,
        status: Status::Passed,
        limit: 0,
        remaining: 0,
        reset: ceil_secs(t),
        reset_after: 0,
        retry_after: 0,
        rule: None,
        window_ms: 0,
    }
}

// ---- generators ---------------------------------------------------------------------------

fn window_rule(name: &'static str) -> impl Strategy<Value = String> {
    (
        1u32..5,
        prop::sample::select(vec![20i64, 50, 100, 300]),
        0u8..6,
    )
        .prop_map(move |(n, w, flags)| {
            let flag = match flags {
                0 => " strict",
                1 => " dry-run",
                _ => "",
            };
            format!("{name} {n}/{w}ms{flag}")
        })
}

fn policy_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(window_rule("global"), 0..3),
        prop::collection::vec(window_rule("api"), 0..3),
        prop::collection::vec(window_rule("auth"), 0..2),
        (
            1u32..4,
            prop::sample::select(vec![50i64, 200]),
            10i64..80,
            prop::option::of(80i64..400),
        ),
        1u64..6,
        any::<bool>(),
    )
        .prop_map(|(g, a, au, (f, d, ban, max), cap, allow)| {
            let mut lines: Vec<String> = g.into_iter().chain(a).chain(au).collect();
            lines.dedup();
            lines.sort(); // keep duplicates adjacent for dedup, then order
            lines.dedup_by(|x, y| {
                x.split_whitespace()
                    .take(2)
                    .eq(y.split_whitespace().take(2))
            });
            let max = max.map(|m| format!("..{m}ms")).unwrap_or_default();
            lines.push(format!("auth lockout {f}/{d}ms for {ban}ms{max}"));
            lines.push(format!("capacity {cap}"));
            lines.push(format!(
                "when-full {}",
                if allow { "allow" } else { "deny" }
            ));
            lines.join("\n")
        })
}

#[derive(Debug, Clone)]
enum Action {
    Check(u8, usize),
    Peek(u8, usize),
    Failure(u8),
    Success(u8),
    Reset(u8, usize),
}

fn action() -> impl Strategy<Value = (Action, i64)> {
    let key = 0u8..6;
    let cat = 0usize..3;
    (
        prop_oneof![
            6 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Check(k, c)),
            2 => (key.clone(), cat.clone()).prop_map(|(k, c)| Action::Peek(k, c)),
            3 => key.clone().prop_map(Action::Failure),
            1 => key.clone().prop_map(Action::Success),
            1 => (key, cat).prop_map(|(k, c)| Action::Reset(k, c)),
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
