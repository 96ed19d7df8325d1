//! Where every word of a table lives, computed from the policy (ARCHITECTURE.md draws it).
//!
//! ```text
//! region = header (16 words) | policy text | stats stripes | index (capacity words) | slots
//! slot   = one key's state, laid out by `engine::layout::KeyLayout`
//! ```
//! Every part starts on a 128-byte boundary and a slot's stride is a multiple of 64 bytes, so
//! two keys never share a cache line.

use crate::engine::layout::{KeyLayout, MAX_RULES_PER_CATEGORY};
use crate::error::Error;
use crate::policy::Policy;

/// The fingerprint of a policy kept in the header: SipHash of its canonical form under a
/// fixed key, so equal policies match however they are spelled.
pub(crate) fn policy_fingerprint(policy: &Policy) -> u64 {
    crate::hash::hash_key([0x736c75696365, 1], policy.canonical().as_bytes())
}

/// Parts of the region start on 128-byte boundaries (the adjacent-line prefetch pair).
const PART_ALIGN_WORDS: usize = 16;
/// Statistics are striped (a stripe per thread, see `table::stats_stripe`) so that threads
/// rarely share a counter's cache line.
pub(crate) const STRIPES: usize = 16;
/// Consecutive index positions a key may live in (its neighbourhood).
pub(crate) const MAX_PROBE: usize = 16;

/// Header word offsets.
pub(crate) mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const CAPACITY: usize = 2;
    pub const SLOT_WORDS: usize = 3;
    pub const SECRET0: usize = 4;
    pub const SECRET1: usize = 5;
    pub const POLICY_FINGERPRINT: usize = 6;
    pub const POLICY_LEN: usize = 7;
    pub const CREATED_MS: usize = 8;
    pub const STATE: usize = 9;
    /// STATE of a finished table (the header is complete).
    pub const STATE_READY: u64 = 2;
    pub const STATS_OFFSET: usize = 10;
    pub const INDEX_OFFSET: usize = 11;
    pub const SLOTS_OFFSET: usize = 12;
    pub const TOTAL_WORDS: usize = 13;
    /// 0, or the byte length of the path of the table that superseded this one, appended to
    /// the file after the table (written by a migration, after the path).
    #[cfg_attr(loom, allow(dead_code))] // read by the file code, not built under loom
    pub const SUPERSEDED: usize = 14;
    pub const WORDS: usize = 16;
    /// "SLUICE" then format 1, little-endian.
    pub const MAGIC_VALUE: u64 = u64::from_le_bytes(*b"SLUICE\x00\x01");
    pub const FORMAT_VERSION: u64 = 1;
}

/// Per-stripe statistics counters: table-wide ones first, then five per rule.
pub(crate) mod stat {
    pub const EVICTIONS: usize = 0;
    pub const RECLAIMED: usize = 1;
    pub const FULL: usize = 2;
    pub const TABLE_COUNTERS: usize = 3;
    pub const PASSED: usize = 0;
    pub const LIMITED: usize = 1;
    pub const DRY_RUN_LIMITED: usize = 2;
    pub const LOCKED: usize = 3;
    pub const LOCKOUTS: usize = 4;
    pub const PER_RULE: usize = 5;
}

#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// One key's state, the contents of a slot.
    pub key: KeyLayout,
    pub capacity: usize,
    pub probe: usize,
    pub slot_words: usize,
    pub stripe_words: usize,
    pub stats_offset: usize,
    pub index_offset: usize,
    pub slots_offset: usize,
    pub total_words: usize,
}

fn round_up(x: usize, to: usize) -> Option<usize> {
    x.checked_add(to - 1).map(|v| v / to * to)
}

/// Why a policy cannot be laid out.
#[derive(Debug)]
pub(crate) enum LayoutError {
    TooManyRules { category: String, count: usize },
    TooLarge,
}

impl Layout {
    pub(crate) fn new(policy: &Policy, policy_len: usize) -> Result<Layout, LayoutError> {
        let key = KeyLayout::new(policy).map_err(|e| LayoutError::TooManyRules {
            category: e.category,
            count: e.count,
        })?;
        let capacity = usize::try_from(policy.capacity).map_err(|_| LayoutError::TooLarge)?;
        let slot_words = key.words;
        let stripe_words = round_up(
            stat::TABLE_COUNTERS + stat::PER_RULE * policy.rules.len(),
            PART_ALIGN_WORDS,
        )
        .ok_or(LayoutError::TooLarge)?;
        let policy_words =
            round_up(policy_len.div_ceil(8), PART_ALIGN_WORDS).ok_or(LayoutError::TooLarge)?;
        let stats_offset = header::WORDS + policy_words;
        let index_offset = stats_offset + STRIPES * stripe_words;
        let slots_offset =
            index_offset + round_up(capacity, PART_ALIGN_WORDS).ok_or(LayoutError::TooLarge)?;
        let total_words = capacity
            .checked_mul(slot_words)
            .and_then(|s| s.checked_add(slots_offset))
            .filter(|w| w.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize))
            .ok_or(LayoutError::TooLarge)?;
        Ok(Layout {
            key,
            capacity,
            probe: capacity.min(MAX_PROBE),
            slot_words,
            stripe_words,
            stats_offset,
            index_offset,
            slots_offset,
            total_words,
        })
    }

    /// Bytes of table memory one key takes: its slot plus its index word.
    pub(crate) fn bytes_per_key(&self) -> usize {
        self.slot_words * 8 + 8
    }
}

/// Lay out `policy` (of `text_len` bytes of text), or say why it cannot be.
pub(crate) fn layout_for(policy: &Policy, text_len: usize) -> Result<Layout, Error> {
    Layout::new(policy, text_len).map_err(|e| match e {
        LayoutError::TooManyRules { category, count } => Error::PolicyTooLarge(format!(
            "category {category:?} has {count} rules (global ones included); at most {MAX_RULES_PER_CATEGORY}"
        )),
        LayoutError::TooLarge => Error::PolicyTooLarge(
            "capacity × bytes per key does not fit in this machine's address space".into(),
        ),
    })
}
