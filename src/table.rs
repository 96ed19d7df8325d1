//! The table: header, statistics, the index of key fingerprints and the slots (SPEC §4).
//!
//! **Index word** of a slot (one `AtomicU64` per slot, contiguous, so a key's neighbourhood of
//! 16 positions is two cache lines):
//!
//! ```text
//! 0                                   empty (the slot's state is cleared)
//! 01 | 0        (8) | fingerprint (54) reserved: a thread is installing this key here
//! 11 | lockgen  (8) | fingerprint (54) live
//! ```
//!
//! A key lives at one of the `probe` positions after its home `hash * capacity >> 64`.
//! Installing a key: CAS a chosen position (the first empty one, else a victim) to
//! `reserved(fp)`, then read every other position of the neighbourhood with a read-modify-write
//! (so that of two threads installing the same key, at least one sees the other), back off if
//! the key is live or being installed elsewhere, else clear the slot's state if it was a
//! victim's and publish `live(fp)` with a release store.
//!
//! `lockgen` is bumped (CAS) before a lockout is written into a slot, and an evictor's CAS from
//! `live` to `reserved` expects the exact word under which it saw no active lock: so a lock
//! set while a slot is being taken over is never lost (the locker's CAS fails and it retries
//! on the key's new slot), and an active lockout is never evicted.
//!
//! The fingerprint is 54 bits: a new key is falsely merged with an existing one only if both
//! land in the same neighbourhood with equal fingerprints, probability at most
//! 16 / 2^54 ≈ 8.9e-16 per new key.

use crate::layout::{header, stat, Layout, STRIPES};
use crate::log::Log;
use crate::region::Region;
use crate::sync::{AtomicU64, Ordering};

const TAG_SHIFT: u32 = 62;
const TAG_RESERVED: u64 = 0b01 << TAG_SHIFT;
const TAG_LIVE: u64 = 0b11 << TAG_SHIFT;
const TAG_MASK: u64 = 0b11 << TAG_SHIFT;
const FP_MASK: u64 = (1 << 54) - 1;
const LOCKGEN_SHIFT: u32 = 54;
const LOCKGEN_MASK: u64 = 0xff << LOCKGEN_SHIFT;

#[inline]
fn is_live_fp(w: u64, fp: u64) -> bool {
    w & !LOCKGEN_MASK == TAG_LIVE | fp
}

/// Lock word of a lockout: `(until + 1) << 8 | level`; 0 = never locked.
#[inline]
pub(crate) fn lock_until(w: u64) -> Option<i64> {
    match w >> 8 {
        0 => None,
        u => Some(u as i64 - 1),
    }
}
#[inline]
pub(crate) fn lock_level(w: u64) -> u32 {
    (w & 0xff) as u32
}
#[inline]
pub(crate) fn lock_pack(until: i64, level: u32) -> u64 {
    ((until as u64 + 1) << 8) | level.min(0xff) as u64
}

/// A hint to the CPU to bring `word`'s cache line closer (x86-64 `prefetcht0`); a no-op on
/// other targets and under loom (whose atomics are not plain memory).
#[inline(always)]
pub(crate) fn prefetch(word: &AtomicU64) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: `prefetcht0` is a hint that never faults and reads nothing architecturally; the
    // address is that of a live word anyway. SSE is part of the x86-64 baseline.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(word as *const AtomicU64 as *const i8);
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = word;
}

/// A key's hash, split into what the table uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHash {
    pub fp: u64,
    pub home: usize,
    pub stripe: usize,
}

/// Where a key was found or put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The key's slot, and the index word it was seen under.
    Slot(usize),
    /// No slot (and none was asked for).
    Absent,
    /// Another thread is installing this very key right now.
    Busy,
    /// No slot can be had: every candidate holds an active lockout.
    Full,
}

enum Choice {
    Position(usize, u64, bool),
    Settled(Found),
}

pub(crate) struct Table {
    region: Region,
    pub layout: Layout,
    pub secret: [u64; 2],
}

impl Table {
    pub(crate) fn new_private(
        layout: Layout,
        secret: [u64; 2],
        policy_text: &str,
        fingerprint: u64,
        now_ms: i64,
    ) -> std::io::Result<Table> {
        let region = Region::private(layout.total_words)?;
        let t = Table {
            region,
            layout,
            secret,
        };
        t.init_header(policy_text, fingerprint, now_ms);
        Ok(t)
    }

    fn init_header(&self, policy_text: &str, fingerprint: u64, now_ms: i64) {
        let w = self.region.words();
        let l = &self.layout;
        let set = |i: usize, v: u64| w[i].store(v, Ordering::Relaxed);
        set(header::VERSION, header::FORMAT_VERSION);
        set(header::CAPACITY, l.capacity as u64);
        set(header::SLOT_WORDS, l.slot_words as u64);
        set(header::SECRET0, self.secret[0]);
        set(header::SECRET1, self.secret[1]);
        set(header::POLICY_FINGERPRINT, fingerprint);
        set(header::POLICY_LEN, policy_text.len() as u64);
        set(header::CREATED_MS, now_ms as u64);
        set(header::STATS_OFFSET, l.stats_offset as u64);
        set(header::INDEX_OFFSET, l.index_offset as u64);
        set(header::SLOTS_OFFSET, l.slots_offset as u64);
        set(header::TOTAL_WORDS, l.total_words as u64);
        for (i, chunk) in policy_text.as_bytes().chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            set(header::WORDS + i, u64::from_le_bytes(b));
        }
        set(header::STATE, 2);
        // The magic goes last, with release: a reader that sees it sees a complete header.
        w[header::MAGIC].store(header::MAGIC_VALUE, Ordering::Release);
    }

    #[inline]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        self.region.words()
    }

    #[inline]
    pub(crate) fn split_hash(&self, h: u64) -> KeyHash {
        KeyHash {
            fp: h & FP_MASK,
            home: ((h as u128 * self.layout.capacity as u128) >> 64) as usize,
            stripe: ((h >> 54) as usize) % STRIPES,
        }
    }

    #[inline]
    fn index(&self, pos: usize) -> &AtomicU64 {
        &self.words()[self.layout.index_offset + pos]
    }

    /// The words of slot `s`.
    #[inline]
    pub(crate) fn slot(&self, s: usize) -> &[AtomicU64] {
        let start = self.layout.slots_offset + s * self.layout.slot_words;
        &self.words()[start..start + self.layout.slot_words]
    }

    #[inline]
    fn position(&self, kh: &KeyHash, j: usize) -> usize {
        let p = kh.home + j;
        if p >= self.layout.capacity {
            p - self.layout.capacity
        } else {
            p
        }
    }

    /// The window-rule log `w` of slot words `slot`.
    #[inline]
    pub(crate) fn window_log<'a>(&'a self, slot: &'a [AtomicU64], w: usize) -> Log<'a> {
        let wl = &self.layout.windows[w];
        Log {
            counter: &slot[wl.counter],
            ring: &slot[wl.ring..wl.ring + wl.limit as usize],
            window_ms: wl.window_ms,
        }
    }

    /// The failure log of lockout `l` of slot words `slot`.
    #[inline]
    pub(crate) fn failure_log<'a>(&'a self, slot: &'a [AtomicU64], l: usize) -> Log<'a> {
        let ll = &self.layout.lockouts[l];
        Log {
            counter: &slot[ll.counter],
            ring: &slot[ll.ring..ll.ring + ll.failures as usize],
            window_ms: ll.window_ms,
        }
    }

    /// Ask the CPU to start loading the key's neighbourhood of index words (up to three
    /// cache lines: its home position's line, the one after, and the one holding its last
    /// position). A hint only: nothing is read or decided. [`Limiter::check_batch_at`] issues
    /// these for many keys before deciding any, so that their cache misses overlap.
    ///
    /// [`Limiter::check_batch_at`]: crate::Limiter::check_batch_at
    #[inline]
    pub(crate) fn prefetch_index(&self, kh: &KeyHash) {
        let probe = self.layout.probe;
        prefetch(self.index(kh.home));
        if probe > 8 {
            prefetch(self.index(self.position(kh, 8)));
        }
        prefetch(self.index(self.position(kh, probe - 1)));
    }

    /// Where the key lives now, if it has a slot, by a plain lookup: for prefetching only
    /// (the decision looks again), so a reserved key reads as absent.
    #[inline]
    pub(crate) fn peek_position(&self, kh: &KeyHash) -> Option<usize> {
        match self.find(kh) {
            Found::Slot(pos) => Some(pos),
            _ => None,
        }
    }

    /// Prefetch the first two cache lines of slot `pos`: its `last_active` word, log
    /// counters and lock words, and the start of its rings (the whole slot of a small policy).
    #[inline]
    pub(crate) fn prefetch_slot(&self, pos: usize) {
        let words = self.words();
        let start = self.layout.slots_offset + pos * self.layout.slot_words;
        if let Some(w) = words.get(start) {
            prefetch(w);
        }
        if self.layout.slot_words > 8 {
            if let Some(w) = words.get(start + 8) {
                prefetch(w);
            }
        }
    }

    /// Find the key's slot without creating one.
    #[inline]
    pub(crate) fn find(&self, kh: &KeyHash) -> Found {
        // Most keys live at their home position: start loading that slot now, so that its
        // cache misses overlap the index word's instead of following them (a hint only).
        self.prefetch_slot(kh.home);
        let mut busy = false;
        for j in 0..self.layout.probe {
            let w = self.index(self.position(kh, j)).load(Ordering::Acquire);
            if is_live_fp(w, kh.fp) {
                return Found::Slot(self.position(kh, j));
            }
            busy |= w == TAG_RESERVED | kh.fp;
        }
        if busy {
            Found::Busy
        } else {
            Found::Absent
        }
    }

    /// Find the key's slot, installing the key if it has none.
    pub(crate) fn find_or_insert(&self, kh: &KeyHash, now: i64) -> Found {
        match self.find(kh) {
            Found::Absent => {}
            other => return other,
        }
        // A few attempts: each failed one means another thread changed the neighbourhood.
        for _ in 0..8 {
            let (pos, seen, victim_expired) = match self.choose_position(kh, now) {
                Choice::Position(pos, seen, expired) => (pos, seen, expired),
                Choice::Settled(found) => return found,
            };
            if self
                .index(pos)
                .compare_exchange(
                    seen,
                    TAG_RESERVED | kh.fp,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                match self.find(kh) {
                    Found::Absent => continue,
                    other => return other,
                }
            }
            let was_victim = seen != 0;
            if was_victim {
                self.clear_slot(pos);
                let counter = if victim_expired {
                    stat::RECLAIMED
                } else {
                    stat::EVICTIONS
                };
                self.count_table(kh.stripe, counter);
            }
            // Dekker-style check through read-modify-writes: of two threads installing the
            // same key, at least one sees the other's reservation.
            let mut other = None;
            for j in 0..self.layout.probe {
                let p = self.position(kh, j);
                if p == pos {
                    continue;
                }
                let w = self.index(p).fetch_add(0, Ordering::AcqRel);
                if is_live_fp(w, kh.fp) {
                    other = Some(Found::Slot(p));
                    break;
                }
                if w == TAG_RESERVED | kh.fp {
                    other = Some(Found::Busy);
                }
            }
            // The reserved word is ours: publishing and giving back are swaps rather than plain
            // stores only because loom mis-orders a store against another thread's concurrent
            // read-modify-write of the same word (tokio-rs/loom#254); on hardware both are the
            // same single write.
            match other {
                Some(Found::Busy) => {
                    // Another thread is installing the key elsewhere. Give the position back
                    // (its state already cleared) and look again: it may have published.
                    self.index(pos).swap(0, Ordering::AcqRel);
                    match self.find(kh) {
                        Found::Absent => continue,
                        found => return found,
                    }
                }
                Some(found) => {
                    self.index(pos).swap(0, Ordering::AcqRel);
                    return found;
                }
                None => {}
            }
            self.slot(pos)[0].store(now as u64 + 1, Ordering::Relaxed);
            self.index(pos).swap(TAG_LIVE | kh.fp, Ordering::AcqRel);
            return Found::Slot(pos);
        }
        Found::Busy
    }

    /// Pick where a new key goes: the first empty position, else the slot of an expired key,
    /// else the least recently active key without an active lockout. Returns the position,
    /// the index word it was chosen under, and whether the victim had expired — or what
    /// settles the question if the key itself turned up (installed meanwhile, or being
    /// installed), or [`Found::Full`].
    fn choose_position(&self, kh: &KeyHash, now: i64) -> Choice {
        let mut best: Option<(usize, u64, bool, u64)> = None;
        for j in 0..self.layout.probe {
            let p = self.position(kh, j);
            let w = self.index(p).load(Ordering::Acquire);
            if w == 0 {
                return Choice::Position(p, 0, false);
            }
            if is_live_fp(w, kh.fp) {
                return Choice::Settled(Found::Slot(p)); // never evict the key we are placing
            }
            if w == TAG_RESERVED | kh.fp {
                return Choice::Settled(Found::Busy);
            }
            if w & TAG_MASK != TAG_LIVE {
                continue; // another key being installed
            }
            let slot = self.slot(p);
            if self.has_active_lock(slot, now) {
                continue;
            }
            let expired = self.is_expired(slot, now);
            let last = slot[0].load(Ordering::Relaxed);
            let better = match best {
                None => true,
                Some((_, _, best_expired, best_last)) => {
                    (expired && !best_expired) || (expired == best_expired && last < best_last)
                }
            };
            if better {
                best = Some((p, w, expired, last));
            }
        }
        match best {
            Some((p, w, expired, _)) => Choice::Position(p, w, expired),
            None => Choice::Settled(Found::Full),
        }
    }

    pub(crate) fn has_active_lock(&self, slot: &[AtomicU64], now: i64) -> bool {
        self.layout
            .lockouts
            .iter()
            .any(|l| matches!(lock_until(slot[l.lock].load(Ordering::Acquire)), Some(u) if u > now))
    }

    /// Nothing the key holds can affect a decision any more: every log's newest entry is out
    /// of its window and every lockout (and the memory of its level) has passed.
    fn is_expired(&self, slot: &[AtomicU64], now: i64) -> bool {
        let l = &self.layout;
        let logs_quiet = (0..l.windows.len())
            .map(|w| self.window_log(slot, w))
            .chain((0..l.lockouts.len()).map(|i| self.failure_log(slot, i)))
            .all(|log| match log.newest() {
                None => true,
                Some(ts) => ts <= now.saturating_sub(log.window_ms),
            });
        let locks_quiet = l.lockouts.iter().all(|lo| {
            let w = slot[lo.lock].load(Ordering::Acquire);
            match lock_until(w) {
                None => true,
                Some(u) => u.saturating_add(lo.max_ban_ms.unwrap_or(lo.ban_ms)) <= now,
            }
        });
        logs_quiet && locks_quiet
    }

    /// Forget everything a slot holds (its position is reserved by the caller).
    fn clear_slot(&self, pos: usize) {
        let slot = self.slot(pos);
        for w in 0..self.layout.windows.len() {
            self.window_log(slot, w).clear();
        }
        for (i, lo) in self.layout.lockouts.iter().enumerate() {
            self.failure_log(slot, i).clear();
            slot[lo.lock].swap(0, Ordering::AcqRel);
        }
    }

    /// Bump the slot's lockgen so that no evictor holding an older view can take it; fails if
    /// the key no longer lives at `pos`.
    pub(crate) fn bump_lockgen(&self, pos: usize, fp: u64) -> Result<(), ()> {
        let idx = self.index(pos);
        let mut w = idx.load(Ordering::Acquire);
        loop {
            if !is_live_fp(w, fp) {
                return Err(());
            }
            let next = (w & !LOCKGEN_MASK) | ((w + (1 << LOCKGEN_SHIFT)) & LOCKGEN_MASK);
            match idx.compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => w = now,
            }
        }
    }

    #[inline]
    fn stat_word(&self, stripe: usize, i: usize) -> &AtomicU64 {
        &self.words()[self.layout.stats_offset + stripe * self.layout.stripe_words + i]
    }

    #[inline]
    pub(crate) fn count_table(&self, stripe: usize, counter: usize) {
        self.stat_word(stripe, counter)
            .fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn count_rule(&self, stripe: usize, rule: usize, counter: usize) {
        self.stat_word(
            stripe,
            stat::TABLE_COUNTERS + rule * stat::PER_RULE + counter,
        )
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sum_table(&self, counter: usize) -> u64 {
        (0..STRIPES)
            .map(|s| self.stat_word(s, counter).load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn sum_rule(&self, rule: usize, counter: usize) -> u64 {
        self.sum_table(stat::TABLE_COUNTERS + rule * stat::PER_RULE + counter)
    }

    /// Live keys and keys with an active lockout, by a scan of the index.
    pub(crate) fn census(&self, now: i64) -> (u64, u64) {
        let (mut live, mut locked) = (0, 0);
        for p in 0..self.layout.capacity {
            if self.index(p).load(Ordering::Acquire) & TAG_MASK == TAG_LIVE {
                live += 1;
                if self.has_active_lock(self.slot(p), now) {
                    locked += 1;
                }
            }
        }
        (live, locked)
    }
}
