//! The per-key engine: every decision of a policy over one key's state, a fixed-size array of
//! words laid out from the policy ([`layout`]), without the index or the table.
//!
//! The table (`crate::table`) finds or claims a key's slot and hands its words here; the
//! Redis module keeps each key's words in a value of its own. Both run exactly these
//! functions. What the engine needs from whoever owns the words is a [`Fence`]: a way to tell
//! that the words still belong to the key (a slot can be taken over by another key while a
//! thread works on it) and to publish a lock so that no evictor takes the slot meanwhile.
//! What it gives back is the [`Decision`] and a [`Tally`] of the statistics to count, which
//! the owner counts once.
//!
//! [`KeyEngine`] and [`KeyState`] are the public face of the same code, for a host that stores
//! one key's state itself.

mod carry;
pub(crate) mod layout;
pub(crate) mod lockout;
pub(crate) mod log;
/// The format-2 log of 4-byte entries: its protocol core, not yet the table's.
#[cfg(test)]
pub(crate) mod narrow_log;
pub(crate) mod report;

use crate::error::Error;
use crate::policy::Policy;
use crate::sync::{AtomicU64, Ordering};
use crate::time::{ceil_secs, MAX_TIME_MS};
use layout::{KeyLayout, LAST_ACTIVE, MAX_RULES_PER_CATEGORY};
use log::{HintWord, Observed, SlidingLog, Summary};
use report::{
    admission, admitted_report, failures_left, locked, no_rule, refusal, refused_report, verdict,
    Op, Rule,
};

/// A category of requests, resolved once from its name with [`crate::Limiter::category`] (or
/// [`KeyEngine::category`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Category(pub(crate) usize);

impl Category {
    /// `global`: requests with no category of their own. Always id 0.
    pub const GLOBAL: Category = Category(0);

    /// The category called `name` in `policy`, or an error listing the ones it has.
    pub(crate) fn named(policy: &Policy, name: &str) -> Result<Category, Error> {
        policy
            .categories
            .iter()
            .position(|c| c == name)
            .map(Category)
            .ok_or_else(|| Error::UnknownCategory {
                name: name.to_owned(),
                known: policy.categories.clone(),
            })
    }

    /// The category's id (its index in [`Policy::categories`]).
    pub fn id(self) -> usize {
        self.0
    }
}

/// What happened to a request. The numbers are part of the C ABI and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Admitted by every rule.
    Passed = 0,
    /// Refused by a rule.
    Limited = 1,
    /// Refused: the key is locked out of the category.
    Locked = 2,
    /// No slot could be had for a new key (every candidate holds an active lockout);
    /// `when-full` decided whether it was admitted.
    Full = 3,
    /// Admitted, but a `dry-run` rule would have refused it.
    DryRunLimited = 4,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Limited => "limited",
            Status::Locked => "locked",
            Status::Full => "full",
            Status::DryRunLimited => "dry-run-limited",
        }
    }
}

/// The answer to a request, reported for its deciding rule (docs/semantics.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub status: Status,
    /// N of the deciding rule (F for a lockout); 0 when no rule applies.
    pub limit: u32,
    /// Requests the deciding rule would still admit now, after recording this one; 0 when
    /// refused. For `failure`: failures left before a lockout.
    pub remaining: u32,
    /// Unix seconds (rounded up) when `remaining` next grows: the oldest logged timestamp in
    /// the window plus the window; the end of the lock when locked.
    pub reset: i64,
    /// Whole seconds from now until `reset` (rounded up): the IETF `t` parameter.
    pub reset_after: u32,
    /// Whole seconds (rounded up, at least 1) until this request would be admitted; 0 when
    /// allowed.
    pub retry_after: u32,
    /// Index of the deciding rule in [`Policy::rules`] (policy order), if any.
    pub rule: Option<usize>,
    /// The deciding rule's window (the lockout's failure window when locked).
    pub window_ms: i64,
}

impl Default for Decision {
    /// An admitted request with no rule: the value of a decision not yet made.
    fn default() -> Decision {
        Decision {
            allowed: true,
            status: Status::Passed,
            limit: 0,
            remaining: 0,
            reset: 0,
            reset_after: 0,
            retry_after: 0,
            rule: None,
            window_ms: 0,
        }
    }
}

/// What an unlock found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlock {
    /// The key was locked until `until_ms`; it no longer is.
    Unlocked { until_ms: i64 },
    /// The key holds a state but was not locked (its failures were forgotten all the same).
    NotLocked,
    /// The table holds nothing for the key (never seen, or evicted): nothing changed.
    UnknownKey,
}

/// How the engine's writers make sure the words they change still belong to their key.
///
/// A table slot can be taken over by another key while a thread works on it. Every write
/// that *clears* something (a log, a lock) is a CAS whose expected value was read before
/// [`Fence::holds`] confirmed ownership with a read-modify-write of the word that names the
/// owner; a lock is published by [`Fence::lock_set`] after it is written. ARCHITECTURE.md §3
/// argues why this loses neither key's state.
pub(crate) trait Fence {
    /// Do the words still belong to the caller's key? (A read-modify-write, so that it is
    /// ordered against a takeover.)
    fn holds(&self) -> bool;
    /// A lock was just written into the words: make it visible to whoever might take them
    /// over. `false` if they no longer belong to the key (the lock must then be taken back).
    fn lock_set(&self) -> bool;
}

/// The fence of words no one else can take over (a state the caller owns).
pub(crate) struct Unfenced;

impl Fence for Unfenced {
    #[inline]
    fn holds(&self) -> bool {
        true
    }
    #[inline]
    fn lock_set(&self) -> bool {
        true
    }
}

/// The words stopped belonging to the caller's key: what was not written yet was left alone.
#[derive(Debug)]
pub(crate) struct Lost;

/// Statistics a decision asks its owner to count: one bit per (counter, rule). Bits
/// `16 c + i` are counter `c` (passed, limited, dry-run-limited) of the category's `i`-th
/// window rule (in the order of `CategoryLayout::windows`); bit [`Tally::LOCKED`] and bit
/// [`Tally::LOCKOUT`] are the category's lockout. One word, so that the common decision's
/// tally is one bit and counting it one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally(pub u64);

impl Tally {
    pub const PASSED: u32 = 0;
    pub const LIMITED: u32 = 1;
    pub const DRY_RUN_LIMITED: u32 = 2;
    /// The lockout refused a request of a locked key.
    pub const LOCKED: u32 = 48;
    /// The lockout locked the key.
    pub const LOCKOUT: u32 = 49;

    /// Counter `counter` (PASSED, LIMITED, DRY_RUN_LIMITED) of the category's window `i`.
    #[inline(always)]
    pub(crate) fn window(counter: u32, i: usize) -> Tally {
        Tally(1 << (counter * 16 + i as u32))
    }

    /// Bit `bit` alone (LOCKED, LOCKOUT).
    #[inline(always)]
    pub(crate) fn bit(bit: u32) -> Tally {
        Tally(1 << bit)
    }

    #[inline(always)]
    pub(crate) fn add(&mut self, other: Tally) {
        self.0 |= other.0;
    }
}

/// What a failure left behind when its words were taken over before its lock was fenced in:
/// the lock word to install on the key's new state, without counting failures again.
pub(crate) struct Moved(pub u64);

/// How many times a decision re-reads its rules after losing a race on one of them before it
/// refuses (which is always safe). Each lost race means another request was logged.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// The engine of one policy: its key layout and the decisions over a key's words.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    pub layout: KeyLayout,
}

impl Engine {
    pub(crate) fn new(layout: KeyLayout) -> Engine {
        Engine { layout }
    }

    /// The window-rule log `w` of the key's words `state`.
    #[inline]
    pub(crate) fn window_log<'a>(&'a self, state: &'a [AtomicU64], w: usize) -> SlidingLog<'a> {
        let wl = &self.layout.windows[w];
        SlidingLog {
            counter: &state[wl.counter],
            ring: &state[wl.ring..wl.ring + wl.limit as usize],
            window_ms: wl.window_ms,
            hint: HintWord {
                words: state,
                at: wl.hint,
            },
        }
    }

    /// The failure log of lockout `l` of the key's words `state`.
    #[inline]
    pub(crate) fn failure_log<'a>(&'a self, state: &'a [AtomicU64], l: usize) -> SlidingLog<'a> {
        let ll = &self.layout.lockouts[l];
        SlidingLog {
            counter: &state[ll.counter],
            ring: &state[ll.ring..ll.ring + ll.failures as usize],
            window_ms: ll.window_ms,
            hint: HintWord::NONE,
        }
    }

    /// Unix ms + 1 of the key's last check or failure (0 = never).
    #[inline]
    pub(crate) fn last_active(&self, state: &[AtomicU64]) -> u64 {
        state[LAST_ACTIVE].load(Ordering::Relaxed)
    }

    /// Stamp the key as active at `now` (for the table's choice of whom to evict).
    #[inline]
    pub(crate) fn touch(&self, state: &[AtomicU64], now: i64) {
        let last = &state[LAST_ACTIVE];
        let stamp = now as u64 + 1;
        if last.load(Ordering::Relaxed) != stamp {
            last.store(stamp, Ordering::Relaxed);
        }
    }

    /// Is any lockout of the key active at `now`?
    pub(crate) fn has_active_lock(&self, state: &[AtomicU64], now: i64) -> bool {
        self.layout
            .lockouts
            .iter()
            .any(|l| lockout::active(state[l.lock].load(Ordering::Acquire), now).is_some())
    }

    /// The Unix ms from which nothing the key's state holds can affect a decision: every
    /// log's newest entry is out of its window and every lock (and the memory of its level)
    /// has passed. `None` if it holds nothing at all.
    pub(crate) fn expires_at(&self, state: &[AtomicU64]) -> Option<i64> {
        let l = &self.layout;
        let logs = (0..l.windows.len())
            .map(|w| self.window_log(state, w))
            .chain((0..l.lockouts.len()).map(|i| self.failure_log(state, i)))
            .filter_map(|log| log.newest().map(|ts| ts.saturating_add(log.window_ms)));
        let locks = l
            .lockouts
            .iter()
            .filter_map(|lo| lockout::forgotten_at(lo, state[lo.lock].load(Ordering::Acquire)));
        logs.chain(locks).max()
    }

    /// Nothing the key holds can affect a decision at `now` any more.
    #[inline]
    pub(crate) fn is_expired(&self, state: &[AtomicU64], now: i64) -> bool {
        self.expires_at(state).is_none_or(|e| e <= now)
    }

    /// Forget everything the state holds (a slot given to another key), fenced.
    pub(crate) fn clear_all(&self, state: &[AtomicU64], fence: &impl Fence) -> Result<(), Lost> {
        for w in 0..self.layout.windows.len() {
            self.window_log(state, w).clear(fence)?;
        }
        for (i, lo) in self.layout.lockouts.iter().enumerate() {
            self.failure_log(state, i).clear(fence)?;
            clear_lock(&state[lo.lock], fence)?;
        }
        Ok(())
    }

    // ---- decisions -------------------------------------------------------------------

    /// A check (which records) or a peek (which does not) of category `cat` at `now`.
    /// `A`: the whole [`Decision`], or only whether the request may go ahead ([`Answer`]).
    #[inline(always)]
    pub(crate) fn decide<A: Answer>(
        &self,
        state: &[AtomicU64],
        cat: usize,
        now: i64,
        op: Op,
    ) -> (A, Tally) {
        if op == Op::Check {
            self.touch(state, now);
        }
        let cl = &self.layout.categories[cat];
        if let Some(li) = cl.lockout {
            let lo = &self.layout.lockouts[li];
            if let Some(until) = lockout::active(state[lo.lock].load(Ordering::Acquire), now) {
                let tally = Tally(u64::from(op == Op::Check) << Tally::LOCKED);
                return (A::of(locked(lo, until, now)), tally);
            }
        }
        // The per-rule state lives on the stack, sized to the category: a one-rule category
        // does not build, zero and walk fifteen unused entries on every check.
        match cl.windows.len() {
            0 => (A::of(no_rule(now)), Tally::default()),
            1 if op == Op::Check => self.check_one_rule::<A>(state, cat, now),
            1 => self.decide_windows::<1, A>(state, cat, now, op),
            2..=4 => self.decide_windows::<4, A>(state, cat, now, op),
            _ => self.decide_windows::<MAX_RULES_PER_CATEGORY, A>(state, cat, now, op),
        }
    }

    /// A check in a category with one window rule: the common case (one limit per client),
    /// kept short. An admitted request is claimed and reported from its own ticket; a read
    /// that refuses (or a dry-run rule that would) goes to the general path, which reads
    /// again and decides from that read.
    #[inline]
    fn check_one_rule<A: Answer>(&self, state: &[AtomicU64], cat: usize, now: i64) -> (A, Tally) {
        let w = self.layout.categories[cat].windows[0];
        let wl = &self.layout.windows[w];
        let log = self.window_log(state, w);
        for _ in 0..MAX_ATTEMPTS {
            let Ok(obs) = log.observe(now) else {
                let (d, tally) = self.contended(cat, now, Op::Check);
                return (A::of(d), tally);
            };
            if !obs.admit {
                if wl.strict || wl.dry_run {
                    return self.decide_windows::<1, A>(state, cat, now, Op::Check);
                }
                let tally = Tally::window(Tally::LIMITED, 0);
                if !A::REPORTS {
                    return (A::verdict(false), tally);
                }
                let s = Summary::of_refusal(wl.limit, obs.nth_ts);
                return (
                    A::of(refusal(wl.limit, wl.window_ms, wl.rule, &s, now)),
                    tally,
                );
            }
            if log.claim(&obs, now).is_ok() {
                let tally = Tally::window(Tally::PASSED, 0);
                if !A::REPORTS {
                    return (A::verdict(true), tally);
                }
                let s = log.claimed_summary(&obs, now);
                let d = admission(
                    wl.limit,
                    wl.window_ms,
                    wl.rule,
                    s.in_window,
                    s.oldest_in_window,
                    now,
                );
                return (A::of(d), tally);
            }
        }
        let (d, tally) = self.contended(cat, now, Op::Check);
        (A::of(d), tally)
    }

    /// The window rules of category `cat` (at most `K`, at least one) decide a request on
    /// the key's words: read every rule; if an enforced one refuses, refuse; otherwise
    /// claim every admitting rule in policy order, and on a lost race give back what was
    /// claimed and decide again from fresh reads.
    #[inline(never)]
    fn decide_windows<const K: usize, A: Answer>(
        &self,
        state: &[AtomicU64],
        cat: usize,
        now: i64,
        op: Op,
    ) -> (A, Tally) {
        let windows = &self.layout.categories[cat].windows;
        let rule = |w: usize| Rule {
            log: self.window_log(state, w),
            wl: &self.layout.windows[w],
            obs: Observed::UNREAD,
        };
        let mut rules = [rule(windows[0]); K];
        for i in 1..windows.len() {
            rules[i] = rule(windows[i]);
        }
        let rules = &mut rules[..windows.len()];
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let mut refused = false;
            for r in rules.iter_mut() {
                let Ok(obs) = r.log.observe(now) else {
                    let (d, tally) = self.contended(cat, now, op);
                    return (A::of(d), tally);
                };
                r.obs = obs;
                refused |= !obs.admit && !r.wl.dry_run;
            }
            let mut tally = Tally::default();
            if refused {
                if op == Op::Check {
                    for (i, r) in rules.iter().enumerate().filter(|(_, r)| !r.obs.admit) {
                        if r.wl.strict {
                            let _ = r.log.push(now);
                        }
                        if !r.wl.dry_run {
                            tally.add(Tally::window(Tally::LIMITED, i));
                        }
                    }
                }
                if !A::REPORTS {
                    return (A::verdict(false), tally);
                }
                return (A::of(refused_report(rules, now, op)), tally);
            }
            if op == Op::Peek {
                return (A::of(admitted_report(rules, now, false)), tally);
            }
            for i in 0..rules.len() {
                let r = &rules[i];
                // A dry-run rule that would refuse is not logged, as if it were enforced.
                if r.obs.admit && r.log.claim(&r.obs, now).is_err() {
                    for r2 in rules[..i].iter().filter(|r2| r2.obs.admit) {
                        r2.log.give_back(&r2.obs, now);
                    }
                    continue 'attempt;
                }
            }
            for (i, r) in rules.iter().enumerate() {
                if r.obs.admit {
                    tally.add(Tally::window(Tally::PASSED, i));
                } else {
                    if r.wl.strict {
                        let _ = r.log.push(now);
                    }
                    tally.add(Tally::window(Tally::DRY_RUN_LIMITED, i));
                }
            }
            if !A::REPORTS {
                return (A::verdict(true), tally);
            }
            return (A::of(admitted_report(rules, now, true)), tally);
        }
        let (d, tally) = self.contended(cat, now, op);
        (A::of(d), tally)
    }

    /// The decision for a key that holds nothing (a peek of a key the table does not hold):
    /// every log is empty.
    #[inline(never)]
    pub(crate) fn fresh(&self, cat: usize, now: i64) -> Decision {
        let mut best: Option<Decision> = None;
        for &w in &self.layout.categories[cat].windows {
            let wl = &self.layout.windows[w];
            let d = admission(wl.limit, wl.window_ms, wl.rule, 1, Some(now), now);
            if best.is_none_or(|b| d.remaining < b.remaining) {
                best = Some(d);
            }
        }
        best.unwrap_or_else(|| no_rule(now))
    }

    /// A request that lost too many races (or raced the installation of its own key):
    /// refused, which can only make the limiter stricter. A check's refusal is reported as
    /// the category's first rule's and counted in that rule's `limited`, so the counts hold
    /// every refusal a caller sees; a peek counts nothing.
    #[inline(never)]
    pub(crate) fn contended(&self, cat: usize, now: i64, op: Op) -> (Decision, Tally) {
        let first = self.layout.categories[cat]
            .windows
            .first()
            .map(|&w| &self.layout.windows[w]);
        let tally = Tally(u64::from(first.is_some() && op == Op::Check) << (16 * Tally::LIMITED));
        let d = Decision {
            allowed: false,
            status: Status::Limited,
            limit: first.map_or(0, |w| w.limit),
            remaining: 0,
            reset: ceil_secs(now + 1000),
            reset_after: 1,
            retry_after: 1,
            rule: first.map(|w| w.rule),
            window_ms: first.map_or(0, |w| w.window_ms),
        };
        (d, tally)
    }

    // ---- lockouts ----------------------------------------------------------------------

    /// The answer to a failure that could not be recorded (it raced the installation of its
    /// own key): the failures left of a key that holds none.
    pub(crate) fn failure_unrecorded(&self, li: usize, now: i64) -> Decision {
        failures_left(&self.layout.lockouts[li], &Summary::default(), now)
    }

    /// Record a failed attempt in lockout `li` at `now`: the key's state afterwards, and what
    /// to count. `pending` is a lock decided on words that were taken over before it was
    /// fenced in ([`Moved`]): it is installed here without counting failures again.
    pub(crate) fn failure(
        &self,
        state: &[AtomicU64],
        li: usize,
        now: i64,
        fence: &impl Fence,
        pending: Option<u64>,
    ) -> Result<(Decision, Tally), Moved> {
        let lo = &self.layout.lockouts[li];
        let lockout_tally = Tally::bit(Tally::LOCKOUT);
        state[LAST_ACTIVE].store(now as u64 + 1, Ordering::Relaxed);
        let lock = &state[lo.lock];
        let log = self.failure_log(state, li);
        let mut pending = pending;
        for _ in 0..MAX_ATTEMPTS {
            let w = lock.load(Ordering::Acquire);
            if let Some(until) = lockout::active(w, now) {
                // Failures while locked are not counted and do not extend the lock.
                return Ok((locked(lo, until, now), Tally::default()));
            }
            if pending.is_none() {
                // Counted back from the ticket this failure took: of failures racing into the
                // log, the one with the highest ticket counts them all and locks.
                let s = match log.push(now) {
                    Ok(obs) => log.claimed_summary(&obs, now),
                    Err(_) => log.summarize(now),
                };
                if s.in_window < lo.failures {
                    // A lock set by a racing failure meanwhile still answers this one.
                    let w2 = lock.load(Ordering::Acquire);
                    if let Some(until) = lockout::active(w2, now) {
                        return Ok((locked(lo, until, now), Tally::default()));
                    }
                    return Ok((failures_left(lo, &s, now), Tally::default()));
                }
            }
            let new = match pending {
                // The lock decided on the key's old words, in the epoch of these.
                Some(p) => lockout::pack(w, lockout::until(p).unwrap_or(now), lockout::level(p)),
                None => lockout::next(lo, w, now),
            };
            if let Err(cur) = lock.compare_exchange(w, new, Ordering::AcqRel, Ordering::Acquire) {
                if let Some(until) = lockout::active(cur, now) {
                    return Ok((locked(lo, until, now), Tally::default())); // a racing failure locked it
                }
                pending = Some(new);
                continue;
            }
            // Fence the lock in: whoever would take the words over from before this point
            // cannot complete, and whoever looks after it sees the lock.
            if !fence.lock_set() {
                // The words were taken over: take our lock back from their new owner (if it
                // landed after they were cleared) and install it on the key's new words.
                let _ = lock.compare_exchange(
                    new,
                    lockout::cleared(new),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                return Err(Moved(new));
            }
            let _ = log.clear(fence);
            let until = lockout::until(new).expect("locked");
            return Ok((locked(lo, until, now), lockout_tally));
        }
        Ok((
            failures_left(lo, &Summary::default(), now),
            Tally::default(),
        ))
    }

    /// A successful attempt: forget the failures of lockout `li` (the level is kept).
    pub(crate) fn success(
        &self,
        state: &[AtomicU64],
        li: usize,
        fence: &impl Fence,
    ) -> Result<(), Lost> {
        self.failure_log(state, li).clear(fence)
    }

    /// Clear everything a check of `cat` consults: the logs of its rules (the global ones
    /// included) and its lockout with failures, lock and level.
    pub(crate) fn reset(
        &self,
        state: &[AtomicU64],
        cat: usize,
        fence: &impl Fence,
    ) -> Result<(), Lost> {
        let cl = &self.layout.categories[cat];
        for &w in &cl.windows {
            self.window_log(state, w).clear(fence)?;
        }
        if let Some(li) = cl.lockout {
            self.failure_log(state, li).clear(fence)?;
            clear_lock(&state[self.layout.lockouts[li].lock], fence)?;
        }
        Ok(())
    }

    /// Lift lockout `li` (an operator's pardon): its lock, level and failures are forgotten;
    /// rate-limit logs are kept. Says whether the key was locked at `now`.
    pub(crate) fn unlock(
        &self,
        state: &[AtomicU64],
        li: usize,
        now: i64,
        fence: &impl Fence,
    ) -> Result<Unlock, Lost> {
        let was = clear_lock(&state[self.layout.lockouts[li].lock], fence)?;
        self.failure_log(state, li).clear(fence)?;
        Ok(match lockout::active(was, now) {
            Some(until) => Unlock::Unlocked { until_ms: until },
            None => Unlock::NotLocked,
        })
    }
}

/// Clear a lock word (lock and level) by a CAS from a value read before the fence's check;
/// returns what it held.
fn clear_lock(lock: &AtomicU64, fence: &impl Fence) -> Result<u64, Lost> {
    let mut l = lock.load(Ordering::Acquire);
    loop {
        if lockout::is_clear(l) {
            return Ok(l);
        }
        if !fence.holds() {
            return Err(Lost);
        }
        match lock.compare_exchange(l, lockout::cleared(l), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(l),
            Err(now) => l = now,
        }
    }
}

/// What a decision answers: the whole [`Decision`], or (for `allow`) only whether the request
/// may go ahead. Both decide, record and count the same; `bool` skips the report (the counting
/// of windows for `remaining` and `reset`), and its answer travels in a register.
pub(crate) trait Answer: Copy {
    /// Whether the report is built.
    const REPORTS: bool;
    /// The answer without a report.
    fn verdict(allowed: bool) -> Self;
    /// The answer of a whole decision.
    fn of(d: Decision) -> Self;
}

impl Answer for Decision {
    const REPORTS: bool = true;
    #[inline(always)]
    fn verdict(allowed: bool) -> Decision {
        verdict(allowed)
    }
    #[inline(always)]
    fn of(d: Decision) -> Decision {
        d
    }
}

impl Answer for bool {
    const REPORTS: bool = false;
    #[inline(always)]
    fn verdict(allowed: bool) -> bool {
        allowed
    }
    #[inline(always)]
    fn of(d: Decision) -> bool {
        d.allowed
    }
}

// ---- the public per-key engine --------------------------------------------------------------

/// The engine of a policy over key states that the caller stores: the decisions of
/// [`crate::Limiter`] for one key, without a table.
///
/// A host that keeps each client key's state itself (the Redis module keeps one value per
/// client key) makes one [`KeyEngine`] per policy and one [`KeyState`] per key. Decisions are
/// the same as a [`crate::Limiter`]'s for that key, call for call.
///
/// ```
/// use sluice::{KeyEngine, Status};
///
/// let engine = KeyEngine::new("global 2/1m\nauth lockout 3/15m for 15m")?;
/// let auth = engine.category("auth")?;
/// let state = engine.new_state();
/// let t = 1_700_000_000_000;
/// assert!(engine.check(&state, auth, t)?.allowed);
/// for i in 0..3 {
///     engine.failure(&state, auth, t + i)?;
/// }
/// assert_eq!(engine.check(&state, auth, t + 10)?.status, Status::Locked);
/// // The state can be read out as plain values and written back.
/// let copy = engine.restore(&engine.snapshot(&state))?;
/// assert_eq!(engine.peek(&copy, auth, t + 20)?, engine.peek(&state, auth, t + 20)?);
/// assert!(engine.expires_at(&state).unwrap() > t + 15 * 60_000);
/// # Ok::<(), sluice::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyEngine {
    engine: Engine,
    policy: Policy,
}

/// One key's state: a fixed-size array of words laid out from the policy
/// ([`KeyEngine::state_words`] of them). `Send + Sync`; the engine's calls take `&KeyState`
/// and are safe from several threads at once, as on a table.
pub struct KeyState {
    words: Box<[AtomicU64]>,
}

impl std::fmt::Debug for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyState")
            .field("words", &self.words.len())
            .finish_non_exhaustive()
    }
}

impl KeyState {
    /// The state's words, as plain values (what a host may persist as they are, for the same
    /// policy).
    pub fn words(&self) -> Vec<u64> {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .collect()
    }
}

/// A key's state as plain values: what [`KeyEngine::snapshot`] reads and
/// [`KeyEngine::restore`] writes back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySnapshot {
    /// Per window rule (in policy order of the window rules): the logged timestamps, oldest
    /// first, at most the rule's limit of them.
    pub windows: Vec<Vec<i64>>,
    /// Per lockout (in policy order of the lockouts).
    pub lockouts: Vec<LockoutSnapshot>,
}

/// One lockout of a key, as plain values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockoutSnapshot {
    /// Logged failures, oldest first, at most the lockout's F of them.
    pub failures: Vec<i64>,
    /// The end of the last lock (Unix ms), if the key was locked since it was last cleared.
    pub locked_until: Option<i64>,
    /// Lockouts in a row as of the last lock (the escalation level).
    pub level: u32,
}

impl KeyEngine {
    /// The engine of `policy` (the policy language of docs/semantics.md).
    pub fn new(policy: &str) -> Result<KeyEngine, Error> {
        KeyEngine::from_policy(Policy::parse(policy)?)
    }

    /// The engine of a parsed policy.
    pub fn from_policy(policy: Policy) -> Result<KeyEngine, Error> {
        let layout = KeyLayout::new(&policy).map_err(|e| {
            Error::PolicyTooLarge(format!(
                "category {:?} has {} rules (global ones included); at most {MAX_RULES_PER_CATEGORY}",
                e.category, e.count
            ))
        })?;
        Ok(KeyEngine {
            engine: Engine::new(layout),
            policy,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Resolve a category name.
    pub fn category(&self, name: &str) -> Result<Category, Error> {
        Category::named(&self.policy, name)
    }

    /// Words in one key's state.
    pub fn state_words(&self) -> usize {
        self.engine.layout.words
    }

    /// A state that holds nothing: the state of a key never seen.
    pub fn new_state(&self) -> KeyState {
        KeyState {
            words: (0..self.state_words()).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A state from words read out of [`KeyState::words`] under the same policy; `None` if
    /// their number is not [`KeyEngine::state_words`].
    pub fn state_from_words(&self, words: &[u64]) -> Option<KeyState> {
        (words.len() == self.state_words()).then(|| KeyState {
            words: words.iter().map(|&w| AtomicU64::new(w)).collect(),
        })
    }

    fn args(&self, state: &KeyState, category: Category, now: i64) -> Result<usize, Error> {
        if category.0 >= self.policy.categories.len() {
            return Err(Error::InvalidCategory(category.0));
        }
        if !(0..=MAX_TIME_MS).contains(&now) {
            return Err(Error::TimeOutOfRange(now));
        }
        assert_eq!(
            state.words.len(),
            self.state_words(),
            "a KeyState of another policy"
        );
        Ok(category.0)
    }

    fn lockout_of(&self, cat: usize) -> Result<usize, Error> {
        self.engine.layout.categories[cat]
            .lockout
            .ok_or_else(|| Error::NoLockout {
                category: self.policy.categories[cat].clone(),
            })
    }

    fn decide(&self, state: &KeyState, c: Category, now: i64, op: Op) -> Result<Decision, Error> {
        let cat = self.args(state, c, now)?;
        Ok(self.engine.decide::<Decision>(&state.words, cat, now, op).0)
    }

    /// May this request go ahead at `now_ms`? Records it if so.
    pub fn check(
        &self,
        state: &KeyState,
        category: Category,
        now_ms: i64,
    ) -> Result<Decision, Error> {
        self.decide(state, category, now_ms, Op::Check)
    }

    /// [`KeyEngine::check`] answering only whether the request may go ahead (recorded the
    /// same way, without the report).
    pub fn allow(&self, state: &KeyState, category: Category, now_ms: i64) -> Result<bool, Error> {
        let cat = self.args(state, category, now_ms)?;
        Ok(self
            .engine
            .decide::<bool>(&state.words, cat, now_ms, Op::Check)
            .0)
    }

    /// The decision a check would give, recording nothing.
    pub fn peek(
        &self,
        state: &KeyState,
        category: Category,
        now_ms: i64,
    ) -> Result<Decision, Error> {
        self.decide(state, category, now_ms, Op::Peek)
    }

    /// Record a failed attempt; the key's state afterwards.
    pub fn failure(
        &self,
        state: &KeyState,
        category: Category,
        now_ms: i64,
    ) -> Result<Decision, Error> {
        let cat = self.args(state, category, now_ms)?;
        let li = self.lockout_of(cat)?;
        // Words nobody takes over never move a lock (`Unfenced::lock_set` holds).
        match self
            .engine
            .failure(&state.words, li, now_ms, &Unfenced, None)
        {
            Ok((d, _)) => Ok(d),
            Err(Moved(_)) => unreachable!("an unfenced lock is never taken over"),
        }
    }

    /// A successful attempt: forget the failures (the level is kept).
    pub fn success(&self, state: &KeyState, category: Category, now_ms: i64) -> Result<(), Error> {
        let cat = self.args(state, category, now_ms)?;
        let li = self.lockout_of(cat)?;
        let _ = self.engine.success(&state.words, li, &Unfenced);
        Ok(())
    }

    /// Clear everything a check of `category` consults.
    pub fn reset(&self, state: &KeyState, category: Category) -> Result<(), Error> {
        let cat = self.args(state, category, 0)?;
        let _ = self.engine.reset(&state.words, cat, &Unfenced);
        Ok(())
    }

    /// Lift the lockout of `category`: lock, level and failures are forgotten.
    pub fn unlock(
        &self,
        state: &KeyState,
        category: Category,
        now_ms: i64,
    ) -> Result<Unlock, Error> {
        let cat = self.args(state, category, now_ms)?;
        let li = self.lockout_of(cat)?;
        Ok(self
            .engine
            .unlock(&state.words, li, now_ms, &Unfenced)
            .unwrap_or(Unlock::NotLocked))
    }

    /// The Unix ms from which nothing in the state can affect any decision (a host may then
    /// drop it: a dropped state and a new one decide alike); `None` if it holds nothing.
    /// Valid while time does not go backwards past the newest logged timestamp.
    pub fn expires_at(&self, state: &KeyState) -> Option<i64> {
        self.engine.expires_at(&state.words)
    }

    /// The state as plain values.
    pub fn snapshot(&self, state: &KeyState) -> KeySnapshot {
        let e = &self.engine;
        KeySnapshot {
            windows: (0..e.layout.windows.len())
                .map(|w| e.window_log(&state.words, w).logged())
                .collect(),
            lockouts: e
                .layout
                .lockouts
                .iter()
                .enumerate()
                .map(|(i, lo)| {
                    let w = state.words[lo.lock].load(Ordering::Acquire);
                    LockoutSnapshot {
                        failures: e.failure_log(&state.words, i).logged(),
                        locked_until: lockout::until(w),
                        level: lockout::level(w),
                    }
                })
                .collect(),
        }
    }

    /// A state holding exactly `snapshot`: every decision on it is the one the snapshotted
    /// state would give. Refuses a snapshot of another shape (the number of rules, more
    /// timestamps than a limit, a time out of range) with [`Error::InvalidState`].
    pub fn restore(&self, snapshot: &KeySnapshot) -> Result<KeyState, Error> {
        let e = &self.engine;
        let bad = |why: String| Err(Error::InvalidState(why));
        if snapshot.windows.len() != e.layout.windows.len()
            || snapshot.lockouts.len() != e.layout.lockouts.len()
        {
            return bad(format!(
                "{} window logs and {} lockouts, where the policy has {} and {}",
                snapshot.windows.len(),
                snapshot.lockouts.len(),
                e.layout.windows.len(),
                e.layout.lockouts.len()
            ));
        }
        let in_range = |ts: &i64| (0..=MAX_TIME_MS).contains(ts);
        let state = self.new_state();
        for (w, logged) in snapshot.windows.iter().enumerate() {
            let wl = &e.layout.windows[w];
            if logged.len() > wl.limit as usize || !logged.iter().all(in_range) {
                return bad(format!(
                    "rule {} holds {} timestamps (at most {}, each in 0..={MAX_TIME_MS})",
                    wl.rule + 1,
                    logged.len(),
                    wl.limit
                ));
            }
            e.window_log(&state.words, w).restore(logged);
        }
        for (i, (lo, snap)) in e.layout.lockouts.iter().zip(&snapshot.lockouts).enumerate() {
            if snap.failures.len() > lo.failures as usize
                || !snap.failures.iter().all(in_range)
                || !snap.locked_until.iter().all(in_range)
                || snap.level > 255
            {
                return bad(format!(
                    "lockout of rule {}: {} failures (at most {}), level {} (at most 255), times in 0..={MAX_TIME_MS}",
                    lo.rule + 1,
                    snap.failures.len(),
                    lo.failures,
                    snap.level
                ));
            }
            e.failure_log(&state.words, i).restore(&snap.failures);
            let w = match snap.locked_until {
                Some(u) => lockout::pack(0, u, snap.level),
                None if snap.level > 0 => {
                    return bad(format!(
                        "lockout of rule {}: level {} without a lock",
                        lo.rule + 1,
                        snap.level
                    ))
                }
                None => 0,
            };
            state.words[lo.lock].store(w, Ordering::Release);
        }
        Ok(state)
    }
}
