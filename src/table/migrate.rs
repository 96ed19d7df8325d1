//! Migration: a new table for a changed policy (or capacity), carrying every key's state over
//! from an existing table file.
//!
//! **What is carried.** Each live key's state is read as a [`KeySnapshot`] (through
//! [`read_key`], the one place that knows the source's format), carried to the new policy by
//! [`KeySnapshot::carry_over`] (every lock with its end and level, the logs of unchanged rules,
//! of changed rules what is still exact) and restored into the new table under the same key
//! hash. Keys whose state no longer matters (expired) are left behind; a new table too small
//! for the rest drops the least recently active unlocked keys, never a locked one: if a
//! locked key finds no free slot, the migration fails and creates nothing.
//!
//! **Re-homing under another capacity.** The index keeps only the low [`FP_BITS`] bits of a
//! key's 64-bit hash (its fingerprint); the home position `hash × capacity >> 64` comes from
//! the high bits. A key sits at one of the `probe` positions after its home, so its position
//! `p` says that its hash lies in the union of the hash ranges of homes `p - probe + 1 ..= p`,
//! which spans `probe × 2^64 / capacity` hash values. When that span is at most `2^54`
//! (capacity ≥ 16 × 2^10 = [`REHOME_MIN_CAPACITY`]), exactly one value in it has the key's
//! fingerprint: the whole hash is recovered and the key is re-homed in a table of any
//! capacity. Below that, the hash is ambiguous, and a capacity change is refused with an
//! error (the same capacity keeps every key at its position). Widening the fingerprint would
//! lift the limit, but the index word has no bit to spare (tag, lock generation, fingerprint).
//!
//! **Atomic for openers.** The new table is built in a temporary file beside TO and made
//! durable before it is linked to TO (or, in place, renamed over FROM): a process opening TO
//! finds nothing or the whole table. Then FROM is marked superseded: the new path is appended
//! to FROM's file and, last, its header word [`header::SUPERSEDED`] is set, so that a process
//! still attached to FROM finds out ([`crate::Limiter::superseded`], `sluice stat`).

use std::path::{Path, PathBuf};

use super::file::{self, Opened};
use super::layout::{header, MAX_PROBE};
use super::{KeyHash, Table, FP_BITS, FP_MASK};
use crate::engine::layout::LAST_ACTIVE;
use crate::error::Error;
use crate::policy::{Policy, RuleKind};
use crate::sync::Ordering;
use crate::{KeyEngine, KeySnapshot};

/// The smallest source capacity from which keys can be moved to a table of another capacity
/// (see the module docs).
pub const REHOME_MIN_CAPACITY: usize = MAX_PROBE << (64 - FP_BITS);

/// What a migration carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The new table's path.
    pub to: PathBuf,
    /// The new table replaced the old one at the same path.
    pub in_place: bool,
    /// Format version of the source table.
    pub from_format: u64,
    /// Capacity of the source and of the new table.
    pub from_capacity: u64,
    pub to_capacity: u64,
    /// Keys carried into the new table.
    pub keys: u64,
    /// Of those, keys with an active lockout (every active lock of a category that still has
    /// a lockout is carried).
    pub locked_keys: u64,
    /// Keys left behind because nothing in their state could affect a decision any more.
    pub expired: u64,
    /// Unlocked keys left behind because the new table had no free slot for them (the least
    /// recently active go first).
    pub dropped: u64,
    /// Active locks not carried because the new policy has no lockout for their category.
    pub locks_of_removed_lockouts: u64,
    /// Per rule of the new policy, in policy order.
    pub rules: Vec<RuleCarried>,
}

/// What one rule of the new policy started with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCarried {
    /// The rule, in canonical form (`auth 10/1m`).
    pub rule: String,
    /// The same rule is in the old policy: its logs were carried whole.
    pub unchanged: bool,
    /// Keys that carried something into this rule's log (or, for a lockout, a failure or a
    /// lock); every other key starts it empty.
    pub keys_with_entries: u64,
}

/// One key of the source, read and carried.
struct Carried {
    pos: usize,
    fp: u64,
    words: Vec<u64>,
    last_active: u64,
    locked: bool,
}

/// The key state held in a source slot's words, as plain values: the one function that reads
/// a source table's slots, switched by its format version.
fn read_key(version: u64, engine: &KeyEngine, words: &[u64]) -> Result<KeySnapshot, String> {
    match version {
        1 => engine
            .state_from_words(words)
            .map(|state| engine.snapshot(&state))
            .ok_or_else(|| {
                format!(
                    "a slot of {} words for a state of {}",
                    words.len(),
                    engine.state_words()
                )
            }),
        v => Err(format!("no reader for table format {v}")),
    }
}

/// The full 64-bit hash of the key whose fingerprint is `fp` at position `pos` of a table of
/// `capacity` positions and neighbourhoods of `probe`: `None` if the positions and
/// fingerprint do not single it out (see the module docs).
pub(crate) fn recover_hash(pos: usize, fp: u64, capacity: usize, probe: usize) -> Option<u64> {
    let cap = capacity as u128;
    let mut found = None;
    for j in 0..probe {
        let home = (pos + capacity - j) % capacity;
        // The hashes whose home is `home`: [lo, hi).
        let lo = ((home as u128) << 64).div_ceil(cap);
        let hi = (((home as u128) + 1) << 64).div_ceil(cap);
        let h = lo + ((fp.wrapping_sub(lo as u64)) & FP_MASK) as u128;
        if h < hi && h <= u64::MAX as u128 {
            if found.is_some() {
                return None;
            }
            found = Some(h as u64);
        }
    }
    found
}

/// Everything a migration needs of its source, opened by the caller.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub table: &'a Table,
    pub policy: &'a Policy,
}

/// Build the new table for `policy` (text `text`) at `to` from `source`, publish it (linked;
/// with `in_place`, renamed over `source.path`) and return it with the report. The caller
/// marks the source superseded.
pub(crate) fn build(
    source: &Source<'_>,
    to: &Path,
    in_place: bool,
    text: &str,
    policy: &Policy,
    mode: u32,
    now: i64,
) -> Result<(Opened, MigrationReport), Error> {
    let fail = |why: String| Error::Migration {
        from: source.path.to_owned(),
        to: to.to_owned(),
        why,
    };
    let src = source.table;
    let version = src.words()[header::VERSION].load(Ordering::Acquire);
    let old_engine = KeyEngine::from_policy(source.policy.clone())?;
    let new_engine = KeyEngine::from_policy(policy.clone())?;
    let new_capacity =
        usize::try_from(policy.capacity).map_err(|_| fail("capacity too large".into()))?;
    let rehome = new_capacity != src.layout.capacity;
    if rehome && src.layout.capacity < REHOME_MIN_CAPACITY {
        return Err(fail(format!(
            "the capacity changes from {} to {}, but a table of capacity below {REHOME_MIN_CAPACITY} keeps too few bits of each key's hash to place it in a table of another capacity (keep `capacity {}` in the new policy, or start the new table empty)",
            src.layout.capacity, new_capacity, src.layout.capacity
        )));
    }
    let mut report = MigrationReport {
        to: to.to_owned(),
        in_place,
        from_format: version,
        from_capacity: src.layout.capacity as u64,
        to_capacity: new_capacity as u64,
        ..MigrationReport::default()
    };
    let canonical_old = source.policy.canonical();
    let old_rules: Vec<&str> = canonical_old
        .lines()
        .take(source.policy.rules.len())
        .collect();
    let canonical_new = policy.canonical();
    report.rules = canonical_new
        .lines()
        .take(policy.rules.len())
        .map(|line| RuleCarried {
            rule: line.to_owned(),
            unchanged: old_rules.contains(&line),
            keys_with_entries: 0,
        })
        .collect();
    // Which snapshot entry each rule of the new policy is: windows and lockouts in policy order.
    let mut rule_entry = Vec::with_capacity(policy.rules.len());
    let (mut nw, mut nl) = (0, 0);
    for r in &policy.rules {
        match r.kind {
            RuleKind::Window(_) => {
                rule_entry.push((true, nw));
                nw += 1;
            }
            RuleKind::Lockout(_) => {
                rule_entry.push((false, nl));
                nl += 1;
            }
        }
    }

    let mut keys = Vec::new();
    for pos in 0..src.layout.capacity {
        let Some(fp) = src.live_fingerprint(pos) else {
            continue;
        };
        let slot = src.slot(pos);
        if src.engine.is_expired(slot, now) {
            report.expired += 1;
            continue;
        }
        let was_locked = src.engine.has_active_lock(slot, now);
        let words: Vec<u64> = slot.iter().map(|w| w.load(Ordering::Acquire)).collect();
        let snapshot = read_key(version, &old_engine, &words)
            .map_err(|why| fail(format!("the key at position {pos}: {why}")))?;
        let carried = snapshot.carry_over(source.policy, policy).ok_or_else(|| {
            fail(format!(
                "the key at position {pos} does not have the shape of the source's policy"
            ))
        })?;
        let locked = carried
            .lockouts
            .iter()
            .any(|l| l.locked_until.is_some_and(|u| u > now));
        if was_locked && !locked {
            report.locks_of_removed_lockouts += 1;
        }
        for (rc, &(window, i)) in report.rules.iter_mut().zip(&rule_entry) {
            let has = if window {
                !carried.windows[i].is_empty()
            } else {
                let l = &carried.lockouts[i];
                !l.failures.is_empty() || l.locked_until.is_some_and(|u| u > now)
            };
            rc.keys_with_entries += has as u64;
        }
        let state = new_engine
            .restore(&carried)
            .map_err(|e| fail(format!("the key at position {pos}: {e}")))?;
        let last_active = src.engine.last_active(slot);
        keys.push(Carried {
            pos,
            fp,
            words: state.words(),
            last_active,
            locked,
        });
    }
    let locked_total = keys.iter().filter(|k| k.locked).count();
    if locked_total > new_capacity {
        return Err(fail(format!(
            "{locked_total} keys are locked out, more than the new capacity of {new_capacity}: every active lock must be carried"
        )));
    }
    // Locked keys are placed first, then the most recently active: when the new table is
    // too small, the least recently active unlocked keys are the ones left behind.
    keys.sort_by(|a, b| {
        b.locked
            .cmp(&a.locked)
            .then(b.last_active.cmp(&a.last_active))
    });

    let secret = src.secret;
    let new = file::build(to, text, policy, secret, now, mode)?;
    let t = &new.table;
    for mut k in keys {
        k.words[LAST_ACTIVE] = k.last_active;
        let pos = if rehome {
            let h = recover_hash(k.pos, k.fp, src.layout.capacity, src.layout.probe).ok_or_else(|| {
                fail(format!(
                    "the key at position {} cannot be placed: its hash is not singled out by its position and fingerprint",
                    k.pos
                ))
            })?;
            let kh: KeyHash = t.split_hash(h);
            t.first_empty(&kh)
        } else {
            Some(k.pos)
        };
        match pos {
            Some(p) if t.place_unpublished(p, k.fp, &k.words) => {
                report.keys += 1;
                report.locked_keys += k.locked as u64;
            }
            _ if k.locked => {
                return Err(fail(format!(
                    "the new table has no free slot for a locked key among the {} positions it may take (capacity {new_capacity}): every active lock must be carried; give the new policy a larger capacity",
                    t.layout.probe
                )));
            }
            _ => report.dropped += 1,
        }
    }
    let opened = new.publish(to, in_place)?.ok_or_else(|| {
        fail(format!(
            "{} was created by another process meanwhile",
            to.display()
        ))
    })?;
    Ok((opened, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(h: u64, capacity: usize) -> usize {
        ((h as u128 * capacity as u128) >> 64) as usize
    }

    #[test]
    fn a_hash_is_recovered_from_its_position_and_fingerprint() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for capacity in [REHOME_MIN_CAPACITY, 65_536, 100_003, 1 << 20] {
            for _ in 0..2_000 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let h = x;
                for j in [0, 1, 7, 15] {
                    let pos = (home(h, capacity) + j) % capacity;
                    assert_eq!(
                        recover_hash(pos, h & FP_MASK, capacity, MAX_PROBE),
                        Some(h),
                        "capacity {capacity}, offset {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn below_the_minimum_capacity_a_hash_is_ambiguous() {
        let h = 0x0123_4567_89ab_cdef_u64;
        let capacity = 1024;
        assert_eq!(
            recover_hash(home(h, capacity), h & FP_MASK, capacity, MAX_PROBE),
            None
        );
    }
}
