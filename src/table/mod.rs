//! The table: header, statistics, the index of key fingerprints and the slots.
//!
//! **Index word** of a slot (one `AtomicU64` per slot, contiguous, so a key's neighbourhood of
//! 16 positions is two cache lines):
//!
//! ```text
//! 0                                              empty
//! 01 | stamp (30) | fingerprint's low 32 bits    reserved: a thread is installing this key here
//! 11 | lockgen (8) | fingerprint (54)            live
//! ```
//!
//! A key lives at one of the `probe` positions after its home `hash * capacity >> 64`.
//! Installing a key: CAS a chosen position (the first empty one, else a victim) to
//! `reserved(fp, stamp)`, clear the slot's state (each write fenced by the reservation, see
//! below), then read every other position of the neighbourhood with a read-modify-write (so
//! that of two threads installing the same key, at least one sees the other), back off if the
//! key is live or being installed elsewhere, else publish `live(fp)` with a CAS from the
//! exact reserved word.
//!
//! **Abandoned claims.** The stamp is the system-wide monotonic clock in seconds. A process
//! killed between reserving and publishing leaves a reserved word behind; once it is
//! [`ABANDON_AFTER_S`] old, any installer may take the position over (or, when the word holds
//! its own key, set it back to empty). The original owner may still be alive (stopped, say),
//! so everything it writes after reserving is fenced: it publishes with a CAS from its exact
//! reserved word, and it clears each slot word with a CAS from a value it read *before* a
//! read-modify-write of the index word that still showed its reservation. A later owner's
//! writes all follow its own CAS of that index word, so a stale owner's CAS either lands first
//! (and is cleared again) or fails: it can never erase another key's log or lock. Stamps of
//! one position never repeat within 2^30 s, so the exact-word CASes see no ABA.
//!
//! `lockgen` is bumped (CAS) before a lockout is written into a slot, and an evictor's CAS from
//! `live` to `reserved` expects the exact word under which it saw no active lock: so a lock
//! set while a slot is being taken over is never lost (the locker's CAS fails and it retries
//! on the key's new slot), and an active lockout is never evicted.
//!
//! The fingerprint is 54 bits: a new key is falsely merged with an existing one only if both
//! land in the same neighbourhood with equal fingerprints, probability at most
//! 16 / 2^54 ≈ 8.9e-16 per new key. A reservation carries only 32 bits of it: two different
//! keys being installed in one neighbourhood at the same moment are taken for one key with
//! probability 16 / 2^32, which only makes one of them wait (it is refused, never admitted).

#[cfg(not(loom))]
pub(crate) mod file;
pub(crate) mod layout;
#[cfg(not(loom))]
pub(crate) mod migrate;
pub(crate) mod region;

use crate::engine::layout::MAX_RULES_PER_CATEGORY;
use crate::engine::{Engine, Fence, Lost, Tally};
use crate::hash::KeyHasher;
use crate::sync::{prefetch, AtomicU64, Ordering};
use layout::{header, stat, Layout, STRIPES};
use region::Region;

const TAG_SHIFT: u32 = 62;
const TAG_RESERVED: u64 = 0b01 << TAG_SHIFT;
const TAG_LIVE: u64 = 0b11 << TAG_SHIFT;
const TAG_MASK: u64 = 0b11 << TAG_SHIFT;
/// Bits of a key's hash the index keeps (its fingerprint; `migrate.rs` re-homes keys from them).
pub(crate) const FP_BITS: u32 = 54;
pub(crate) const FP_MASK: u64 = (1 << FP_BITS) - 1;
const RES_FP_MASK: u64 = (1 << 32) - 1;
const STAMP_SHIFT: u32 = 32;
const STAMP_MASK: u64 = (1 << 30) - 1;
/// A reservation this many seconds old was abandoned by its owner (killed, or stopped for so
/// long that its install is redone by someone else; both are safe, see the module docs).
pub(crate) const ABANDON_AFTER_S: u64 = 2;
const LOCKGEN_SHIFT: u32 = 54;
const LOCKGEN_MASK: u64 = 0xff << LOCKGEN_SHIFT;

#[inline]
fn is_live_fp(w: u64, fp: u64) -> bool {
    w & !LOCKGEN_MASK == TAG_LIVE | fp
}

#[inline]
fn reserved(fp: u64, stamp: u64) -> u64 {
    TAG_RESERVED | (stamp & STAMP_MASK) << STAMP_SHIFT | fp & RES_FP_MASK
}

#[inline]
fn is_reserved(w: u64) -> bool {
    w & TAG_MASK == TAG_RESERVED
}

#[inline]
fn is_reserved_fp(w: u64, fp: u64) -> bool {
    is_reserved(w) && (w ^ fp) & RES_FP_MASK == 0
}

/// Stamps of reservations: the monotonic clock, shared by every process of the machine.
#[cfg(not(loom))]
fn claim_clock() -> u64 {
    #[cfg(target_os = "linux")]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(target_os = "linux"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; clock_gettime cannot fail for this clock.
    unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    ts.tv_sec as u64
}

/// The statistics stripe a call counts in: the calling thread's own, handed out round-robin
/// (from an offset per process) the first time a thread counts. Striping by key instead put
/// two hot keys of two threads on one stripe one time in 16, and the counter's cache line
/// bouncing between the cores then cost about a third of their throughput (the `threads`
/// bench: 96–106 against 66–70 ns per check). Up to 16 threads of a process never share a
/// stripe; threads of different processes may. Any stripe is correct: totals sum them all.
#[cfg(not(loom))]
#[inline(always)]
fn stats_stripe() -> usize {
    let v = STRIPE.get();
    if v != usize::MAX {
        return v;
    }
    first_stripe()
}

#[cfg(not(loom))]
thread_local!(static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) });

/// A thread's first count: hand it the next stripe.
#[cfg(not(loom))]
#[cold]
#[inline(never)]
fn first_stripe() -> usize {
    // Not the protocol's atomics (`crate::sync`): a static hint counter, never modelled.
    use std::sync::atomic::{AtomicUsize, Ordering as HintOrdering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let v = (NEXT.fetch_add(1, HintOrdering::Relaxed) + std::process::id() as usize) % STRIPES;
    STRIPE.set(v);
    v
}

/// Under loom: stripe 0 (the models' threads are loom's; which stripe counts is not part of
/// what they check).
#[cfg(loom)]
#[inline]
fn stats_stripe() -> usize {
    0
}

/// A key's hash, split into what the table uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHash {
    pub fp: u64,
    pub home: usize,
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

/// What a chosen position held.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    Empty,
    /// A key whose logs and locks can no longer affect a decision.
    Expired,
    /// A live key: an eviction.
    Live,
    /// A reservation left behind by an installer that never finished.
    Abandoned,
}

enum Choice {
    Position(usize, u64, Held),
    Settled(Found),
}

/// When reservations count as abandoned.
#[derive(Debug)]
pub(crate) struct Claims {
    /// Age in seconds at which a reservation is abandoned.
    pub abandon_after_s: u64,
    /// Under loom a counter stands in for the clock, so every reservation is unique.
    #[cfg(loom)]
    next: std::sync::atomic::AtomicU64,
}

impl Default for Claims {
    fn default() -> Claims {
        Claims {
            abandon_after_s: ABANDON_AFTER_S,
            #[cfg(loom)]
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Claims {
    #[cfg(not(loom))]
    fn stamp(&self) -> u64 {
        claim_clock()
    }
    #[cfg(loom)]
    fn stamp(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(loom))]
    fn now(&self) -> u64 {
        claim_clock()
    }
    #[cfg(loom)]
    fn now(&self) -> u64 {
        self.next.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Is the reserved word `w` abandoned?
    fn abandoned(&self, w: u64) -> bool {
        let age = self.now().wrapping_sub(w >> STAMP_SHIFT) & STAMP_MASK;
        age >= self.abandon_after_s
    }
}

/// The fence of an installer's writes: its position must still hold its exact reservation.
struct Reserved<'a> {
    index: &'a AtomicU64,
    mine: u64,
}

impl Fence for Reserved<'_> {
    #[inline]
    fn holds(&self) -> bool {
        self.index.fetch_add(0, Ordering::AcqRel) == self.mine
    }
    fn lock_set(&self) -> bool {
        unreachable!("an install clears a slot and locks nothing")
    }
}

/// The fence of writes on a live key's slot: its position must still hold the key.
pub(crate) struct Live<'a> {
    table: &'a Table,
    pos: usize,
    fp: u64,
}

impl Fence for Live<'_> {
    #[inline]
    fn holds(&self) -> bool {
        is_live_fp(
            self.table.index(self.pos).fetch_add(0, Ordering::AcqRel),
            self.fp,
        )
    }
    #[inline]
    fn lock_set(&self) -> bool {
        self.table.bump_lockgen(self.pos, self.fp).is_ok()
    }
}

/// How a table file is opened: the mode it is created with, and whether it is attached for
/// reading only.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileOptions {
    pub mode: u32,
    pub read_only: bool,
}

impl Default for FileOptions {
    fn default() -> FileOptions {
        FileOptions {
            mode: 0o600,
            read_only: false,
        }
    }
}

pub(crate) struct Table {
    region: Region,
    pub layout: Layout,
    /// The per-key engine that decides over each slot's words.
    pub engine: Engine,
    pub secret: [u64; 2],
    /// The key hash: SipHash-1-3 under the secret for a table in a file (stable across builds,
    /// since other processes and later versions read it), ahash under the secret for a
    /// private one (read only by this binary and the processes it forks).
    pub hasher: KeyHasher,
    pub claims: Claims,
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
            engine: Engine::new(layout.key.clone()),
            layout,
            secret,
            hasher: KeyHasher::for_table(secret, true),
            claims: Claims::default(),
        };
        t.init_header(policy_text, fingerprint, now_ms);
        Ok(t)
    }

    /// A table over a region that already holds one (a file checked by `file.rs`).
    #[cfg(not(loom))]
    pub(crate) fn attached(region: Region, layout: Layout, secret: [u64; 2]) -> Table {
        Table {
            region,
            engine: Engine::new(layout.key.clone()),
            layout,
            secret,
            hasher: KeyHasher::for_table(secret, false),
            claims: Claims::default(),
        }
    }

    /// A table over a fresh zeroed region, its header written (magic last).
    #[cfg(not(loom))]
    pub(crate) fn initialised(
        region: Region,
        layout: Layout,
        secret: [u64; 2],
        policy_text: &str,
        fingerprint: u64,
        now_ms: i64,
    ) -> Table {
        let t = Table::attached(region, layout, secret);
        t.init_header(policy_text, fingerprint, now_ms);
        t
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
        set(header::STATE, header::STATE_READY);
        // The magic goes last, with release: a reader that sees it sees a complete header.
        w[header::MAGIC].store(header::MAGIC_VALUE, Ordering::Release);
    }

    #[inline]
    #[cfg(all(test, not(loom)))]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// See [`Region::advise_huge_pages`].
    pub(crate) fn advise_huge_pages(&self) -> std::io::Result<()> {
        self.region.advise_huge_pages()
    }

    pub(crate) fn words(&self) -> &[AtomicU64] {
        self.region.words()
    }

    #[inline]
    pub(crate) fn split_hash(&self, h: u64) -> KeyHash {
        KeyHash {
            fp: h & FP_MASK,
            home: ((h as u128 * self.layout.capacity as u128) >> 64) as usize,
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
        if is_live_fp(self.index(kh.home).load(Ordering::Acquire), kh.fp) {
            return Found::Slot(kh.home); // most keys live at home
        }
        let mut busy = false;
        for j in 0..self.layout.probe {
            let w = self.index(self.position(kh, j)).load(Ordering::Acquire);
            if is_live_fp(w, kh.fp) {
                return Found::Slot(self.position(kh, j));
            }
            busy |= is_reserved_fp(w, kh.fp) && !self.claims.abandoned(w);
        }
        if busy {
            Found::Busy
        } else {
            Found::Absent
        }
    }

    /// Find the key's slot, installing the key if it has none.
    ///
    /// When another thread or process is installing this very key (`Busy`), re-read a bounded
    /// number of times: an install takes a few hundred nanoseconds, and without this the
    /// simultaneous first requests of a new client (parallel requests landing on several
    /// workers) would all but one be refused. The bound keeps it lock-free: an installer that
    /// was descheduled or killed costs at most the bound, then a refusal (always safe).
    #[inline]
    pub(crate) fn find_or_insert(&self, kh: &KeyHash, now: i64) -> Found {
        #[cfg(not(loom))]
        const REREADS: usize = 64;
        #[cfg(loom)]
        const REREADS: usize = 1; // the models explore the single attempt
                                  // A key that has its slot (almost every check) is found without entering `install`.
        let mut found = match self.find(kh) {
            Found::Absent | Found::Busy => self.install(kh, now),
            found => return found,
        };
        for _ in 1..REREADS {
            if found != Found::Busy {
                break;
            }
            for _ in 0..16 {
                std::hint::spin_loop();
            }
            found = self.install(kh, now);
        }
        found
    }

    /// One attempt of [`Table::find_or_insert`].
    #[inline(never)]
    fn install(&self, kh: &KeyHash, now: i64) -> Found {
        match self.find(kh) {
            Found::Absent => {}
            other => return other,
        }
        // A few attempts: each failed one means another thread changed the neighbourhood.
        for _ in 0..8 {
            let (pos, seen, held) = match self.choose_position(kh, now) {
                Choice::Position(pos, seen, held) => (pos, seen, held),
                Choice::Settled(found) => return found,
            };
            let mine = reserved(kh.fp, self.claims.stamp());
            if self
                .index(pos)
                .compare_exchange(seen, mine, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                match self.find(kh) {
                    Found::Absent => continue,
                    other => return other,
                }
            }
            // Whatever the position held (a victim, or the half-cleared state of an abandoned
            // install) goes; an empty position is cleared too, since an abandoned claim may
            // have been given back to empty before its owner finished clearing.
            if self.clear_slot(pos, mine).is_err() {
                continue; // our reservation was taken over: we were too slow
            }
            match held {
                Held::Expired | Held::Abandoned => self.count_table(stat::RECLAIMED),
                Held::Live => self.count_table(stat::EVICTIONS),
                Held::Empty => {}
            }
            // Dekker-style check through read-modify-writes: of two threads installing the
            // same key, at least one sees the other's reservation.
            let mut other = None;
            for j in 0..self.layout.probe {
                let p = self.position(kh, j);
                if p == pos {
                    continue;
                }
                let mut w = self.index(p).fetch_add(0, Ordering::AcqRel);
                if is_reserved_fp(w, kh.fp) && self.claims.abandoned(w) {
                    // A dead install of this key: cancel it, so that it can never publish.
                    match self
                        .index(p)
                        .compare_exchange(w, 0, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => continue,
                        Err(now) => w = now,
                    }
                }
                if is_live_fp(w, kh.fp) {
                    other = Some(Found::Slot(p));
                    break;
                }
                if is_reserved_fp(w, kh.fp) {
                    other = Some(Found::Busy);
                }
            }
            // Giving back and publishing are CASes from our exact reserved word: if the
            // reservation was taken over as abandoned, they fail and change nothing.
            match other {
                Some(Found::Busy) => {
                    // Another thread is installing the key elsewhere. Give the position back
                    // and look again: it may have published.
                    self.release(pos, mine);
                    match self.find(kh) {
                        Found::Absent => continue,
                        found => return found,
                    }
                }
                Some(found) => {
                    self.release(pos, mine);
                    return found;
                }
                None => {}
            }
            self.engine.touch(self.slot(pos), now);
            if self
                .index(pos)
                .compare_exchange(mine, TAG_LIVE | kh.fp, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Found::Slot(pos);
            }
        }
        Found::Busy
    }

    /// Give a reserved position back to empty, unless it was taken over meanwhile.
    fn release(&self, pos: usize, mine: u64) {
        let _ = self
            .index(pos)
            .compare_exchange(mine, 0, Ordering::AcqRel, Ordering::Acquire);
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
                return Choice::Position(p, 0, Held::Empty);
            }
            if is_live_fp(w, kh.fp) {
                return Choice::Settled(Found::Slot(p)); // never evict the key we are placing
            }
            if is_reserved(w) {
                if self.claims.abandoned(w) {
                    return Choice::Position(p, w, Held::Abandoned);
                }
                if is_reserved_fp(w, kh.fp) {
                    return Choice::Settled(Found::Busy);
                }
                continue; // another key being installed
            }
            let slot = self.slot(p);
            if self.engine.has_active_lock(slot, now) {
                continue;
            }
            let expired = self.engine.is_expired(slot, now);
            let last = self.engine.last_active(slot);
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
            Some((p, w, expired, _)) => {
                Choice::Position(p, w, if expired { Held::Expired } else { Held::Live })
            }
            None => Choice::Settled(Found::Full),
        }
    }

    /// Forget everything a slot holds, while its position holds the caller's reservation
    /// `mine`; `Err` if the reservation was taken over (then what was not cleared yet is left
    /// to the new owner). Each word is cleared by a CAS from a value read before an RMW of the
    /// index word showed `mine` (the fence described in the module docs).
    fn clear_slot(&self, pos: usize, mine: u64) -> Result<(), Lost> {
        let fence = Reserved {
            index: self.index(pos),
            mine,
        };
        self.engine.clear_all(self.slot(pos), &fence)
    }

    /// The fence of a live key's slot at `pos`: the engine's writers on it check that the
    /// position still holds the key, and lock it in by bumping its lockgen.
    #[inline]
    pub(crate) fn live_fence(&self, pos: usize, fp: u64) -> Live<'_> {
        Live {
            table: self,
            pos,
            fp,
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
    pub(crate) fn count_table(&self, counter: usize) {
        self.stat_word(stats_stripe(), counter)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Count what one decision in category `cat` asks for, in the calling thread's stripe.
    #[inline(always)]
    pub(crate) fn count(&self, cat: usize, t: Tally) {
        let mut m = t.0;
        if m == 0 {
            return; // a peek
        }
        let stripe = stats_stripe();
        let cl = &self.engine.layout.categories[cat];
        while m != 0 {
            let bit = m.trailing_zeros();
            m &= m - 1;
            let (rule, counter) = match bit {
                Tally::LOCKED => (cl.lockout_rule, stat::LOCKED),
                Tally::LOCKOUT => (cl.lockout_rule, stat::LOCKOUTS),
                b => (
                    cl.rules[b as usize % MAX_RULES_PER_CATEGORY],
                    (b / 16) as usize,
                ),
            };
            self.count_rule(stripe, rule as usize, counter);
        }
    }

    #[inline]
    fn count_rule(&self, stripe: usize, rule: usize, counter: usize) {
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

    /// For tests: reserve the key's home position as an installer that has just begun would
    /// (the key then reads as being installed elsewhere for the next 2 s).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn reserve_now(&self, kh: &KeyHash) {
        self.index(kh.home)
            .store(reserved(kh.fp, claim_clock()), Ordering::Relaxed);
    }

    // ---- for migrations (`migrate.rs`): a scan of the live keys, and placing keys in a
    // table no other process can see yet ----

    /// The fingerprint of the key live at `pos`, if one is.
    #[cfg_attr(loom, allow(dead_code))] // the migration is not built under loom
    pub(crate) fn live_fingerprint(&self, pos: usize) -> Option<u64> {
        let w = self.index(pos).load(Ordering::Acquire);
        (w & TAG_MASK == TAG_LIVE).then_some(w & FP_MASK)
    }

    /// Write a key's state `words` into slot `pos` and publish the key there. Only for a
    /// table that no other thread or process can see (a migration's, before it is linked
    /// into place): plain stores, no reservation. `false` if the position is taken.
    #[cfg_attr(loom, allow(dead_code))] // the migration is not built under loom
    pub(crate) fn place_unpublished(&self, pos: usize, fp: u64, words: &[u64]) -> bool {
        if self.index(pos).load(Ordering::Relaxed) != 0 {
            return false;
        }
        for (word, &v) in self.slot(pos).iter().zip(words) {
            word.store(v, Ordering::Relaxed);
        }
        self.index(pos)
            .store(TAG_LIVE | (fp & FP_MASK), Ordering::Release);
        true
    }

    /// The first empty position of the key's neighbourhood, if any.
    #[cfg_attr(loom, allow(dead_code))] // the migration is not built under loom
    pub(crate) fn first_empty(&self, kh: &KeyHash) -> Option<usize> {
        (0..self.layout.probe)
            .map(|j| self.position(kh, j))
            .find(|&p| self.index(p).load(Ordering::Acquire) == 0)
    }

    /// Live keys, keys with an active lockout, and reserved positions, by a scan of the index.
    pub(crate) fn census(&self, now: i64) -> (u64, u64, u64) {
        let (mut live, mut locked, mut reserved) = (0, 0, 0);
        for p in 0..self.layout.capacity {
            let w = self.index(p).load(Ordering::Acquire);
            if w & TAG_MASK == TAG_LIVE {
                live += 1;
                if self.engine.has_active_lock(self.slot(p), now) {
                    locked += 1;
                }
            } else if is_reserved(w) {
                reserved += 1;
            }
        }
        (live, locked, reserved)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::engine::lockout;
    use crate::policy::Policy;

    const T: i64 = 1_767_225_600_000;

    fn table(policy: &str) -> Table {
        let p = Policy::parse(policy).unwrap();
        Table::new_private(Layout::new(&p, policy.len()).unwrap(), [7, 9], policy, 0, T).unwrap()
    }

    fn kh(t: &Table, key: &str) -> KeyHash {
        t.split_hash(t.hasher.hash(key.as_bytes()))
    }

    /// The reserved word a process killed `age_s` seconds ago left for `fp`.
    fn left_behind(fp: u64, age_s: u64) -> u64 {
        reserved(fp, claim_clock().wrapping_sub(age_s))
    }

    #[test]
    fn a_fresh_reservation_of_the_key_makes_it_busy() {
        let t = table("global 2/1m\ncapacity 64");
        let k = kh(&t, "k");
        t.index(k.home)
            .store(left_behind(k.fp, 0), Ordering::Relaxed);
        assert_eq!(t.find(&k), Found::Busy);
        assert_eq!(t.find_or_insert(&k, T), Found::Busy);
    }

    #[test]
    fn an_abandoned_reservation_of_the_key_is_taken_over() {
        let t = table("global 2/1m\ncapacity 64");
        let k = kh(&t, "k");
        t.index(k.home)
            .store(left_behind(k.fp, ABANDON_AFTER_S), Ordering::Relaxed);
        assert_eq!(t.find(&k), Found::Absent);
        assert_eq!(t.find_or_insert(&k, T), Found::Slot(k.home));
        assert_eq!(t.find(&k), Found::Slot(k.home));
        assert_eq!(t.sum_table(stat::RECLAIMED), 1);
        assert_eq!(t.census(T), (1, 0, 0));
    }

    #[test]
    fn an_abandoned_half_done_install_leaves_nothing_behind() {
        // A slot full of another key's requests and a lock, reserved by a process that died
        // before clearing it: the next key placed there starts from nothing.
        let t = table("auth 1/1m\nauth lockout 1/1m for 1h\ncapacity 1");
        let old = kh(&t, "old");
        assert_eq!(t.find_or_insert(&old, T), Found::Slot(0));
        let slot = t.slot(0);
        assert!(t.engine.window_log(slot, 0).push(T).is_ok());
        t.slot(0)[t.layout.key.lockouts[0].lock]
            .store(lockout::pack(0, T + 3_600_000, 1), Ordering::Relaxed);
        t.index(0)
            .store(left_behind(old.fp, 3600), Ordering::Relaxed);
        let new = kh(&t, "new");
        assert_eq!(t.find_or_insert(&new, T + 1), Found::Slot(0));
        assert!(!t.engine.has_active_lock(t.slot(0), T + 1));
        assert_eq!(t.engine.window_log(t.slot(0), 0).newest(), None);
    }

    #[test]
    fn an_owner_whose_reservation_was_taken_over_writes_nothing() {
        let t = table("global 2/1m\ncapacity 1");
        let a = kh(&t, "a");
        let mine = reserved(a.fp, claim_clock().wrapping_sub(10));
        t.index(0).store(mine, Ordering::Relaxed);
        // Taken over as abandoned by another key, which logs a request.
        let b = kh(&t, "b");
        assert_eq!(t.find_or_insert(&b, T), Found::Slot(0));
        assert!(t.engine.window_log(t.slot(0), 0).push(T).is_ok());
        // The first owner wakes up: its clear and its publish both fail.
        assert!(t.clear_slot(0, mine).is_err());
        assert_eq!(t.engine.window_log(t.slot(0), 0).newest(), Some(T));
        assert!(t
            .index(0)
            .compare_exchange(mine, TAG_LIVE | a.fp, Ordering::AcqRel, Ordering::Acquire)
            .is_err());
        assert_eq!(t.find(&b), Found::Slot(0));
    }
}
