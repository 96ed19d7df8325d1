//! The lock word of a lockout: when the key is locked until, how many lockouts it has had in
//! a row, and an epoch that every clear of the word advances.
//!
//! ```text
//! lock word = epoch (14) | until + 1 (42) | level (8)      until + 1 = 0: not locked
//! ```
//!
//! The epoch is what makes a clear of the word safe against a slot taken over by another key
//! (ARCHITECTURE.md §3): a stale clearer's CAS expects a word of the old key, and the new key's
//! words all carry a later epoch, so the CAS cannot match even when both keys were locked at
//! the same millisecond with the same level. A table made before the epoch existed holds
//! epoch 0 everywhere, and reads the same.

use super::layout::LockoutLayout;
use crate::time::MAX_TIME_MS;

const UNTIL_SHIFT: u32 = 8;
const UNTIL_MASK: u64 = (1 << 42) - 1;
const EPOCH_SHIFT: u32 = 50;
const EPOCH_MASK: u64 = (1 << 14) - 1;
const LEVEL_MASK: u64 = 0xff;

/// When the lock ends (Unix ms), if the word was ever locked since its last clear.
#[inline]
pub(crate) fn until(w: u64) -> Option<i64> {
    match (w >> UNTIL_SHIFT) & UNTIL_MASK {
        0 => None,
        u => Some(u as i64 - 1),
    }
}

/// Lockouts in a row (the escalation level), as of the last lockout.
#[inline]
pub(crate) fn level(w: u64) -> u32 {
    (w & LEVEL_MASK) as u32
}

#[inline]
fn epoch(w: u64) -> u64 {
    (w >> EPOCH_SHIFT) & EPOCH_MASK
}

/// The word locked until `until` at `level`, in the epoch of `w`.
#[inline]
pub(crate) fn pack(w: u64, until: i64, level: u32) -> u64 {
    epoch(w) << EPOCH_SHIFT
        | ((until as u64 + 1) & UNTIL_MASK) << UNTIL_SHIFT
        | u64::from(level.min(LEVEL_MASK as u32))
}

/// The word after a clear of `w`: never locked, level 0, the next epoch.
#[inline]
pub(crate) fn cleared(w: u64) -> u64 {
    ((epoch(w) + 1) & EPOCH_MASK) << EPOCH_SHIFT
}

/// Nothing to clear: never locked (or cleared since) and no level remembered.
#[inline]
pub(crate) fn is_clear(w: u64) -> bool {
    w & !(EPOCH_MASK << EPOCH_SHIFT) == 0
}

/// Is the word locked at `now`? Then until when.
#[inline]
pub(crate) fn active(w: u64, now: i64) -> Option<i64> {
    until(w).filter(|&u| u > now)
}

/// When the lock word stops mattering: the lock has ended and its level is forgotten.
#[inline]
pub(crate) fn forgotten_at(lo: &LockoutLayout, w: u64) -> Option<i64> {
    until(w).map(|u| u.saturating_add(lo.max_ban_ms.unwrap_or(lo.ban_ms)))
}

/// The lock word after a lockout at `now` following lock word `w`: the ban doubles with each
/// lockout in a row (up to the maximum), and the row restarts once the previous lock ended
/// at least the maximum ban (or the ban, without escalation) before `now`.
pub(crate) fn next(lo: &LockoutLayout, w: u64, now: i64) -> u64 {
    let level = match forgotten_at(lo, w) {
        Some(f) if now < f => level(w),
        _ => 0,
    };
    let ban = match lo.max_ban_ms {
        None => lo.ban_ms,
        Some(max) => {
            let doubled = if level >= 40 {
                max
            } else {
                lo.ban_ms.saturating_mul(1i64 << level)
            };
            doubled.min(max)
        }
    };
    pack(w, (now + ban).min(MAX_TIME_MS), level + 1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_clears_advance_the_epoch() {
        let w = pack(0, 1_767_225_600_000, 3);
        assert_eq!((until(w), level(w)), (Some(1_767_225_600_000), 3));
        let c = cleared(w);
        assert!(is_clear(c) && until(c).is_none() && level(c) == 0);
        let again = pack(c, 1_767_225_600_000, 3);
        assert_ne!(again, w, "the same lock after a clear is another word");
        assert_eq!((until(again), level(again)), (until(w), level(w)));
        // The epoch wraps after 2^14 clears without touching the other fields.
        let mut x = w;
        for _ in 0..(1 << 14) {
            x = cleared(x);
        }
        assert_eq!(x, 0);
        assert_eq!(until(pack(x, MAX_TIME_MS, 255)), Some(MAX_TIME_MS));
    }

    #[test]
    fn words_of_the_old_format_read_the_same() {
        // Before the epoch: (until + 1) << 8 | level.
        let old = (1_767_225_600_000u64 + 1) << 8 | 2;
        assert_eq!((until(old), level(old)), (Some(1_767_225_600_000), 2));
        assert_eq!(until(0), None);
    }
}
