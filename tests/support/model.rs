#![allow(dead_code)]
//! The serial reference model of docs/semantics.md, written for clarity, not speed: the oracle
//! of `tests/model.rs` and of the `ops` fuzz target.
//!
//! The model keeps, per key and rule, a `VecDeque` of every logged timestamp and counts the
//! ones in the window; per key and lockout, a deque of failures, the lock's end and its level.
//! Its eviction is global: "expired first, then least recently active, never an active
//! lockout". The engine judges that within a key's 16-position neighbourhood, so the two agree
//! when capacity is at most 16 and times are distinct and non-decreasing (no LRU ties).

use std::collections::{HashMap, VecDeque};

use sluice::policy::{Policy, RuleKind, WhenFull};
use sluice::{Decision, Status};

fn ceil_secs(ms: i64) -> i64 {
    if ms <= 0 {
        0
    } else {
        (ms + 999) / 1000
    }
}

#[derive(Default, Clone)]
pub struct KeyState {
    logs: Vec<VecDeque<i64>>,      // per rule index (window rules only used)
    failures: Vec<VecDeque<i64>>,  // per rule index (lockouts only used)
    lock: Vec<Option<(i64, u32)>>, // per rule index: (until, level)
    last_active: i64,
}

pub struct Model {
    pub policy: Policy,
    pub keys: HashMap<Vec<u8>, KeyState>,
    pub passed: Vec<u64>,
    pub limited: Vec<u64>,
    pub dry: Vec<u64>,
    pub locked: Vec<u64>,
    pub lockouts: Vec<u64>,
    pub evictions: u64,
    pub reclaimed: u64,
}

pub enum Op {
    Check,
    Peek,
}

impl Model {
    pub fn new(policy: Policy) -> Model {
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

    /// Window rules that apply to category `c`: the global ones and c's own, in policy order
    /// (which is what "the first rule" of a tie means).
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
        v.sort_unstable();
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

    pub fn decide(&mut self, key: &[u8], c: usize, t: i64, op: Op) -> Decision {
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
                // (`k` is a copy, kept only by a check: a peek reports as if logged.)
                if strict {
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
                if strict {
                    k.logs[r].push_back(t);
                }
                if record {
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

    pub fn failure(&mut self, key: &[u8], c: usize, t: i64) -> Decision {
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

    pub fn success(&mut self, key: &[u8], c: usize) {
        let lr = self.lockout_of(c).unwrap();
        if let Some(k) = self.keys.get_mut(key) {
            k.failures[lr].clear();
        }
    }

    pub fn reset(&mut self, key: &[u8], c: usize) {
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
