//! Where each rule's words live in one key's state, computed from the policy.
//!
//! ```text
//! state = last_active | window-rule counters | per lockout: lock word, failure counter
//!         | window-rule rings (N words each) | failure rings (F words each) | padding
//! ```
//!
//! The padding's words, while they last, hold the window hints of the longest rings.
//!
//! The state is padded to whole 64-byte lines, so that in a table of such states two keys
//! never share a cache line.

use super::log::HINT_MIN_RING;
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
    /// The word of the state's padding that holds the log's window hint, 0 if there was no
    /// free one to give it (see `log::HintWord`).
    pub hint: usize,
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
                        hint: 0,
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
        // The padding's words hold window hints, longest rings first: a hint is advisory (any
        // value of it counts the same), so it needs no word of its own, and a table file made
        // before hints existed (padding all 0) or without room for them works as it is.
        let mut by_length: Vec<usize> = (0..windows.len())
            .filter(|&w| windows[w].limit > HINT_MIN_RING)
            .collect();
        by_length.sort_by_key(|&w| std::cmp::Reverse(windows[w].limit));
        for (w, word) in by_length.into_iter().zip(next..words) {
            windows[w].hint = word;
        }
        Ok(KeyLayout {
            words,
            windows,
            lockouts,
            categories,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn layout(text: &str) -> KeyLayout {
        KeyLayout::new(&Policy::parse(text).unwrap()).unwrap()
    }

    /// Hints take free words of the padding only, longest rings first, none for short rings
    /// or when no word is free.
    #[test]
    fn hints_live_in_the_padding() {
        // 1 + 3 counters + 2 lockout words + rings 100 + 40 + 17 + 3 failures = 166 words of
        // 168: two free, for the two longest rings.
        let l = layout("global 17/1s\napi 100/1s\napi 40/1m\nauth lockout 3/1m for 1h");
        let used = l.lockouts[0].ring + 3;
        assert_eq!((used, l.words), (166, 168));
        let hint = |limit: u32| l.windows.iter().find(|w| w.limit == limit).unwrap().hint;
        assert_eq!(hint(100), 166);
        assert_eq!(hint(40), 167);
        assert_eq!(hint(17), 0);
        // 1 + 1 + 22 = 24 words: no padding, no hint.
        assert_eq!(layout("global 22/1s").windows[0].hint, 0);
        // A ring of at most HINT_MIN_RING gets none, padding or not.
        assert_eq!(layout("global 16/1s").windows[0].hint, 0);
        assert_eq!(layout("global 17/1s").windows[0].hint, 19);
    }
}
