//! Carrying one key's state over to a changed policy: what a host does with a state written
//! under the policy it ran before (a Redis value saved before a reload, a table migrated to a
//! new file). The rule of thumb is "keep what is still exact, start the rest empty".
//!
//! A window log is the complete history of the requests it logged since it was last cleared,
//! cut to its newest N. Carried to a rule of the same category and strictness (N', W'), its
//! newest min(len, N') timestamps are kept when they decide exactly as the full history would:
//!
//! * N' ≤ N: the N'-th most recent logged request is known whatever the windows;
//! * the log holds fewer than N timestamps: it is the whole history since it was cleared;
//! * W' ≤ W and the old rule was enforced (not dry-run): at most N requests were logged in any
//!   window of W, so every one inside the last W' is among the newest N.
//!
//! Anything else (a larger limit over a longer window, another strictness, a new rule) starts
//! empty, which can only admit what the new rule's own log allows from then on. A lockout of
//! the same category keeps its lock (the same end: a migration neither shortens nor lengthens
//! a lock) and its escalation level; its failures follow the window rule above.

use crate::policy::{Policy, RuleKind};

use super::{KeySnapshot, LockoutSnapshot};

/// One sliding log of a policy: a window rule or a lockout's failures.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LogShape<'p> {
    category: &'p str,
    limit: u32,
    window_ms: i64,
    strict: bool,
    dry_run: bool,
}

fn windows(policy: &Policy) -> Vec<LogShape<'_>> {
    policy
        .rules
        .iter()
        .filter_map(|r| match &r.kind {
            RuleKind::Window(w) => Some(LogShape {
                category: &r.name,
                limit: w.limit,
                window_ms: w.window_ms,
                strict: w.strict,
                dry_run: w.dry_run,
            }),
            RuleKind::Lockout(_) => None,
        })
        .collect()
}

fn lockouts(policy: &Policy) -> Vec<LogShape<'_>> {
    policy
        .rules
        .iter()
        .filter_map(|r| match &r.kind {
            RuleKind::Lockout(l) => Some(LogShape {
                category: &r.name,
                limit: l.failures,
                window_ms: l.window_ms,
                strict: false,
                dry_run: false,
            }),
            RuleKind::Window(_) => None,
        })
        .collect()
}

/// The newest timestamps of `logged` (oldest first, from a log of shape `old`) that a log of
/// shape `new` can keep exactly, or `None` if it must start empty.
fn carried(logged: &[i64], old: LogShape<'_>, new: LogShape<'_>) -> Option<Vec<i64>> {
    if old.category != new.category || old.strict != new.strict {
        return None;
    }
    let complete = logged.len() < old.limit as usize;
    let exact =
        new.limit <= old.limit || complete || (new.window_ms <= old.window_ms && !old.dry_run);
    exact.then(|| logged[logged.len().saturating_sub(new.limit as usize)..].to_vec())
}

/// For each log of `new`, the log of `old` it continues: an identical one first, else the
/// first unused one of the same category and strictness (so two rules of one category pair
/// in policy order).
fn pairing(old: &[LogShape<'_>], new: &[LogShape<'_>]) -> Vec<Option<usize>> {
    let mut used = vec![false; old.len()];
    let mut pairs = vec![None; new.len()];
    for (j, n) in new.iter().enumerate() {
        if let Some(i) = (0..old.len()).find(|&i| !used[i] && old[i] == *n) {
            used[i] = true;
            pairs[j] = Some(i);
        }
    }
    for (j, n) in new.iter().enumerate() {
        if pairs[j].is_some() {
            continue;
        }
        if let Some(i) = (0..old.len())
            .find(|&i| !used[i] && old[i].category == n.category && old[i].strict == n.strict)
        {
            used[i] = true;
            pairs[j] = Some(i);
        }
    }
    pairs
}

impl KeySnapshot {
    /// This snapshot, taken under the policy `from`, as a snapshot for the policy `to`: the
    /// logs of unchanged rules kept whole, of changed rules what is still exact, every
    /// lockout of a category that still has one kept with its lock end and level, the rest
    /// empty (the rules are in the module docs of `carry.rs` and in docs/semantics.md,
    /// "Changing the policy"). `None` if the snapshot does not have the shape of `from`
    /// (another number of window rules or lockouts).
    ///
    /// ```
    /// use sluice::{KeyEngine, Policy};
    /// let old = KeyEngine::new("global 3/1m\nauth lockout 2/1m for 10m")?;
    /// let new = Policy::parse("global 3/1m\nglobal 100/1d\nauth lockout 3/1m for 10m")?;
    /// let state = old.new_state();
    /// let auth = old.category("auth")?;
    /// old.check(&state, auth, 1_000)?;
    /// old.failure(&state, auth, 2_000)?;
    /// old.failure(&state, auth, 3_000)?; // locked until 603_000
    /// let carried = old.snapshot(&state).carry_over(old.policy(), &new).unwrap();
    /// assert_eq!(carried.windows, vec![vec![1_000], vec![]]);
    /// assert_eq!(carried.lockouts[0].locked_until, Some(603_000));
    /// # Ok::<(), sluice::Error>(())
    /// ```
    pub fn carry_over(&self, from: &Policy, to: &Policy) -> Option<KeySnapshot> {
        let (old_w, new_w) = (windows(from), windows(to));
        let (old_l, new_l) = (lockouts(from), lockouts(to));
        if self.windows.len() != old_w.len() || self.lockouts.len() != old_l.len() {
            return None;
        }
        let windows = pairing(&old_w, &new_w)
            .into_iter()
            .zip(&new_w)
            .map(|(pair, &shape)| {
                pair.and_then(|i| carried(&self.windows[i], old_w[i], shape))
                    .unwrap_or_default()
            })
            .collect();
        let lockouts = new_l
            .iter()
            .map(|&shape| {
                let Some(i) = old_l.iter().position(|o| o.category == shape.category) else {
                    return LockoutSnapshot::default();
                };
                let old = &self.lockouts[i];
                LockoutSnapshot {
                    failures: carried(&old.failures, old_l[i], shape).unwrap_or_default(),
                    locked_until: old.locked_until,
                    level: old.level,
                }
            })
            .collect();
        Some(KeySnapshot { windows, lockouts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Policy {
        Policy::parse(text).unwrap()
    }

    fn snap(windows: Vec<Vec<i64>>) -> KeySnapshot {
        KeySnapshot {
            windows,
            lockouts: vec![],
        }
    }

    #[test]
    fn an_unchanged_policy_keeps_everything() {
        let policy = p("global 3/1m\nauth 2/1h\nauth lockout 2/1m for 10m");
        let s = KeySnapshot {
            windows: vec![vec![1, 2, 3], vec![2, 3]],
            lockouts: vec![LockoutSnapshot {
                failures: vec![5],
                locked_until: Some(99),
                level: 2,
            }],
        };
        assert_eq!(s.carry_over(&policy, &policy), Some(s.clone()));
    }

    #[test]
    fn a_smaller_limit_keeps_the_newest() {
        let s = snap(vec![vec![1, 2, 3]]);
        let got = s.carry_over(&p("global 3/1m"), &p("global 2/1d")).unwrap();
        assert_eq!(got.windows, vec![vec![2, 3]]);
    }

    #[test]
    fn a_larger_limit_keeps_a_full_log_only_over_a_window_no_longer() {
        let full = snap(vec![vec![1, 2, 3]]);
        let longer = full
            .carry_over(&p("global 3/1m"), &p("global 5/1h"))
            .unwrap();
        assert_eq!(
            longer.windows,
            vec![Vec::<i64>::new()],
            "older requests are lost"
        );
        let shorter = full
            .carry_over(&p("global 3/1h"), &p("global 5/1m"))
            .unwrap();
        assert_eq!(shorter.windows, vec![vec![1, 2, 3]]);
        let dry = full
            .carry_over(&p("global 3/1h dry-run"), &p("global 5/1m"))
            .unwrap();
        assert_eq!(
            dry.windows,
            vec![Vec::<i64>::new()],
            "a dry run logged past N"
        );
        // A log that never filled is the whole history since it was cleared.
        let partial = snap(vec![vec![1, 2]]);
        let got = partial
            .carry_over(&p("global 3/1m"), &p("global 5/1h"))
            .unwrap();
        assert_eq!(got.windows, vec![vec![1, 2]]);
    }

    #[test]
    fn another_category_or_strictness_starts_empty() {
        let s = snap(vec![vec![1, 2]]);
        let other = s.carry_over(&p("global 3/1m"), &p("media 3/1m")).unwrap();
        assert_eq!(other.windows, vec![Vec::<i64>::new()]);
        let strict = s
            .carry_over(&p("global 3/1m"), &p("global 3/1m strict"))
            .unwrap();
        assert_eq!(strict.windows, vec![Vec::<i64>::new()]);
    }

    #[test]
    fn rules_pair_identical_first_then_in_policy_order() {
        let old = p("write 30/1m\nwrite 500/1h");
        let s = snap(vec![vec![10], vec![20]]);
        // Reordered: each keeps its own log.
        let swapped = s.carry_over(&old, &p("write 500/1h\nwrite 30/1m")).unwrap();
        assert_eq!(swapped.windows, vec![vec![20], vec![10]]);
        // One changed: the unchanged one keeps its log, the changed one takes the other.
        let changed = s.carry_over(&old, &p("write 40/1m\nwrite 500/1h")).unwrap();
        assert_eq!(changed.windows, vec![vec![10], vec![20]]);
        // A rule added: it starts empty.
        let added = s
            .carry_over(&old, &p("global 9/1s\nwrite 30/1m\nwrite 500/1h"))
            .unwrap();
        assert_eq!(added.windows, vec![vec![], vec![10], vec![20]]);
    }

    #[test]
    fn a_lock_keeps_its_end_and_level_when_the_lockout_changes() {
        let s = KeySnapshot {
            windows: vec![],
            lockouts: vec![LockoutSnapshot {
                failures: vec![7, 8],
                locked_until: Some(1_000_000),
                level: 3,
            }],
        };
        let got = s
            .carry_over(
                &p("auth lockout 2/1m for 10m..1d"),
                &p("auth 10/1m\nauth lockout 5/15m for 15m"),
            )
            .unwrap();
        assert_eq!(got.windows, vec![Vec::<i64>::new()]);
        assert_eq!(got.lockouts[0].locked_until, Some(1_000_000));
        assert_eq!(got.lockouts[0].level, 3);
        assert_eq!(
            got.lockouts[0].failures,
            Vec::<i64>::new(),
            "a full log, longer window"
        );
        let gone = s
            .carry_over(&p("auth lockout 2/1m for 10m"), &p("auth 10/1m"))
            .unwrap();
        assert!(gone.lockouts.is_empty());
    }

    #[test]
    fn a_snapshot_of_another_shape_is_refused() {
        let s = snap(vec![vec![1]]);
        assert_eq!(
            s.carry_over(&p("global 3/1m\nauth 2/1m"), &p("global 3/1m")),
            None
        );
    }
}
