//! Where each rule's words live in one key's state, computed from the policy.
//!
//! ```text
//! state = last_active | window-rule counters | per lockout: lock word, failure counter
//!         | window-rule rings (N words each) | failure rings (F words each) | padding
//! ```
//!
//! The state is padded to whole 64-byte lines, so that in a table of such states two keys
//! never share a cache line.

use crate::policy::{Policy, RuleKind};

/// Words per cache line (64 bytes).
pub(crate) const LINE_WORDS: usize = 8;
/// At most this many window rules apply to one category (global ones included), so a
/// decision keeps its per-rule state in a fixed array and never allocates.
pub(crate) const MAX_RULES_PER_CATEGORY: usize = 16;
/// Word 0 of a key's state: Unix ms + 1 of its last check or failure (0 = never), which the
/// table reads to choose the least recently active key to evict.
pub(crate) const LAST_ACTIVE: usize = 0;

/// A window rule's place in a key's state.
#[derive(Clone, Debug)]
pub(crate) struct WindowLayout {
    /// Index of the rule in policy order.
    pub rule: usize,
    pub counter: usize,
    pub ring: usize,
    pub limit: u32,
    pub window_ms: i64,
    pub strict: bool,
    pub dry_run: bool,
}

/// A lockout's place in a key's state.
#[derive(Clone, Debug)]
pub(crate) struct LockoutLayout {
    /// Index of the rule in policy order.
    pub rule: usize,
    pub lock: usize,
    pub counter: usize,
    pub ring: usize,
    pub failures: u32,
    pub window_ms: i64,
    pub ban_ms: i64,
    pub max_ban_ms: Option<i64>,
}

/// What applies to one category.
#[derive(Clone, Debug, Default)]
pub(crate) struct CategoryLayout {
    /// Indexes into `KeyLayout::windows`, in policy order (global rules first).
    pub windows: Vec<usize>,
    /// Index into `KeyLayout::lockouts`.
    pub lockout: Option<usize>,
    /// The rule index (policy order) of each of `windows`, in a fixed array: what counting a
    /// decision's statistics looks up.
    pub rules: [u32; MAX_RULES_PER_CATEGORY],
    /// The rule index of the lockout.
    pub lockout_rule: u32,
}

/// The layout of one key's state for a policy.
#[derive(Clone, Debug)]
pub(crate) struct KeyLayout {
    /// Words of one key's state (a whole number of cache lines).
    pub words: usize,
    pub windows: Vec<WindowLayout>,
    pub lockouts: Vec<LockoutLayout>,
    pub categories: Vec<CategoryLayout>,
}

/// A category with more window rules than [`MAX_RULES_PER_CATEGORY`].
#[derive(Debug)]
pub(crate) struct TooManyRules {
    pub category: String,
    pub count: usize,
}

impl KeyLayout {
    pub(crate) fn new(policy: &Policy) -> Result<KeyLayout, TooManyRules> {
        let mut windows = Vec::new();
        let mut lockouts = Vec::new();
        let mut categories = vec![CategoryLayout::default(); policy.categories.len()];
        // State header: last_active, then counters, then lock words.
        let mut next = LAST_ACTIVE + 1;
        for (i, r) in policy.rules.iter().enumerate() {
            let cat = policy
                .categories
                .iter()
                .position(|c| *c == r.name)
                .expect("every rule's name is a category");
            match &r.kind {
                RuleKind::Window(w) => {
                    categories[cat].windows.push(windows.len());
                    windows.push(WindowLayout {
                        rule: i,
                        counter: next,
                        ring: 0,
                        limit: w.limit,
                        window_ms: w.window_ms,
                        strict: w.strict,
                        dry_run: w.dry_run,
                    });
                    next += 1;
                }
                RuleKind::Lockout(l) => {
                    categories[cat].lockout = Some(lockouts.len());
                    lockouts.push(LockoutLayout {
                        rule: i,
                        lock: next,
                        counter: next + 1,
                        ring: 0,
                        failures: l.failures,
                        window_ms: l.window_ms,
                        ban_ms: l.ban_ms,
                        max_ban_ms: l.max_ban_ms,
                    });
                    next += 2;
                }
            }
        }
        for w in &mut windows {
            w.ring = next;
            next += w.limit as usize;
        }
        for l in &mut lockouts {
            l.ring = next;
            next += l.failures as usize;
        }
        // Global rules apply to every category, ahead of the category's own.
        let global = categories[0].windows.clone();
        for c in categories.iter_mut().skip(1) {
            let mut all = global.clone();
            all.extend(c.windows.iter().copied());
            c.windows = all;
        }
        for (i, c) in categories.iter_mut().enumerate() {
            if c.windows.len() > MAX_RULES_PER_CATEGORY {
                return Err(TooManyRules {
                    category: policy.categories[i].clone(),
                    count: c.windows.len(),
                });
            }
            // Policy order: then "the first rule" of a tie is the first in the policy, even
            // where a category's own rule comes before a global one.
            c.windows.sort_unstable();
            for (j, &w) in c.windows.iter().enumerate() {
                c.rules[j] = windows[w].rule as u32;
            }
            c.lockout_rule = c.lockout.map_or(0, |l| lockouts[l].rule as u32);
        }
        // Limits are at most 65535 each, so this cannot overflow.
        let words = next.div_ceil(LINE_WORDS) * LINE_WORDS;
        Ok(KeyLayout {
            words,
            windows,
            lockouts,
            categories,
        })
    }
}
