//! The format-2 sliding-window log with 4-byte entries (ARCHITECTURE.md §4, "Format 2"): the
//! protocol of [`super::log`] over half words, with a `live` floor instead of generations and
//! slot epochs that bound the age of every entry a reader decodes.
//!
//! Not yet wired into the table (which still writes format 1): this module is the protocol
//! core, checked here against a brute-force serial log and by the loom models.
//!
//! ```text
//! entry      (32) = lap (l) | ts mod M (o)           M = 2^o = 4E, l = 30 - s
//! counter    (32) = ep (1) | live (bits of N + 1) | tk     tk = ticket mod (N × 2^l)
//! slot epoch (64) = phase (1) | P (31) | S (32)            epochs of E = 2^s ms
//! ```
//!
//! Every access is a 64-bit atomic of the words given: a 4-byte field is one half of a word,
//! written by a CAS of the whole word that expects the other half as last read.

// Under loom only the models run; the serial-model tests use the rest.
#![cfg_attr(loom, allow(dead_code))]

use crate::sync::{AtomicU64, Ordering};

/// How often a reader re-reads after racing a writer before it gives up (the caller refuses).
const MAX_RETRIES: usize = 64;
/// Shortest epoch: 2^16 ms (65 s), so that epoch numbers fit 31 bits for all of 2^42 ms.
pub(crate) const MIN_EPOCH_SHIFT: u32 = 16;
/// Fewest lap bits a 4-byte entry may have (below that, the rule takes 8-byte entries).
pub(crate) const MIN_LAP_BITS: u32 = 4;

/// Bits needed to hold every value in `0..=x`.
fn bits(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// A 32-bit field at half-word index `h` of `words` (even: low half, odd: high half).
#[derive(Clone, Copy)]
struct Half<'a> {
    word: &'a AtomicU64,
    shift: u32,
}

impl<'a> Half<'a> {
    fn at(words: &'a [AtomicU64], h: usize) -> Half<'a> {
        Half {
            word: &words[h / 2],
            shift: (h % 2) as u32 * 32,
        }
    }

    #[inline]
    fn load(&self) -> u32 {
        (self.word.load(Ordering::Acquire) >> self.shift) as u32
    }

    /// CAS of this half from `expect` to `new`, whatever the other half holds. Each retry
    /// means the other half (another entry or counter) changed: another thread's progress.
    #[inline]
    fn cas(&self, expect: u32, new: u32) -> Result<(), u32> {
        let mask = 0xffff_ffffu64 << self.shift;
        let mut w = self.word.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let ours = (w >> self.shift) as u32;
            if ours != expect {
                return Err(ours);
            }
            let nw = (w & !mask) | (u64::from(new) << self.shift);
            match self
                .word
                .compare_exchange(w, nw, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(cur) => w = cur,
            }
        }
        Err(expect ^ 1) // gave up: report a value that is not the expected one
    }
}

/// The epoch geometry of one slot: `E = 2^s`, `M = 4E`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Epochs {
    pub shift: u32,
}

impl Epochs {
    /// The epochs of a slot whose longest 4-byte-entry window is `longest_ms`, or `None` if
    /// that window is too long for 4-byte entries (then it takes 8-byte ones).
    pub(crate) fn for_window(longest_ms: i64) -> Option<Epochs> {
        let s = bits((longest_ms.max(1) - 1) as u64).max(MIN_EPOCH_SHIFT);
        (30u32.checked_sub(s)? >= MIN_LAP_BITS).then_some(Epochs { shift: s })
    }
    #[inline]
    fn len(self) -> i64 {
        1 << self.shift
    }
    #[inline]
    fn of(self, t: i64) -> u64 {
        (t.max(0) >> self.shift) as u64
    }
    #[inline]
    fn offset_bits(self) -> u32 {
        self.shift + 2
    }
}

/// The slot epoch word: which epoch each log of the slot is at.
#[derive(Clone, Copy)]
pub(crate) struct SlotEpoch<'a> {
    pub word: &'a AtomicU64,
    pub epochs: Epochs,
}

#[inline]
fn phase(w: u64) -> u32 {
    (w >> 63) as u32
}
#[inline]
fn prev_epoch(w: u64) -> u64 {
    (w >> 32) & 0x7fff_ffff
}
#[inline]
fn cur_epoch(w: u64) -> u64 {
    w & 0xffff_ffff
}

/// One 4-byte-entry log: its counter and ring (half-word indexes into `words`), its window.
#[derive(Clone, Copy)]
pub(crate) struct NarrowLog<'a> {
    pub words: &'a [AtomicU64],
    pub counter: usize,
    pub ring: usize,
    pub n: u32,
    pub window_ms: i64,
    pub slot: SlotEpoch<'a>,
}

/// The fields of a counter, for a log's widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counter {
    ep: u32,
    live: u64,
    tk: u64,
}

/// What a reader saw for the next ticket: enough to decide and to claim.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observed {
    counter: u32,
    entry: u32,
    idx: u64,
    lap: u64,
    epoch: u64,
    /// Timestamp of the N-th most recent logged request, if it is live.
    pub nth_ts: Option<i64>,
    pub admit: bool,
}

/// The race was lost too many times in a row; the caller treats the request as refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Contended;

impl<'a> NarrowLog<'a> {
    #[inline]
    fn n(&self) -> u64 {
        u64::from(self.n)
    }
    #[inline]
    fn live_bits(&self) -> u32 {
        bits(self.n())
    }
    /// Lap bits: what the entry leaves after the offset, and what the counter can hold.
    #[inline]
    fn lap_bits(&self) -> u32 {
        let idx_bits = bits(self.n() - 1);
        (32 - self.slot.epochs.offset_bits()).min(31 - self.live_bits() - idx_bits)
    }
    /// Tickets wrap at N × 2^l, so that `tk mod N` and `tk / N` stay the ring index and lap.
    #[inline]
    fn ticket_modulus(&self) -> u64 {
        self.n() << self.lap_bits()
    }
    /// Does this log fit 4-byte entries and a 4-byte counter?
    pub(crate) fn fits(n: u32, epochs: Epochs) -> bool {
        let n = u64::from(n);
        let l = (32 - epochs.offset_bits()).min((31 - bits(n)).saturating_sub(bits(n - 1)));
        n >= 1 && l >= MIN_LAP_BITS
    }

    #[inline]
    fn unpack(&self, c: u32) -> Counter {
        let tk_bits = 31 - self.live_bits();
        Counter {
            ep: c >> 31,
            live: u64::from((c >> tk_bits) & ((1 << self.live_bits()) - 1)),
            tk: u64::from(c & ((1 << tk_bits) - 1)),
        }
    }
    #[inline]
    fn pack(&self, c: Counter) -> u32 {
        let tk_bits = 31 - self.live_bits();
        (c.ep << 31) | ((c.live as u32) << tk_bits) | c.tk as u32
    }
    #[inline]
    fn advanced(&self, c: Counter) -> Counter {
        Counter {
            ep: c.ep,
            live: (c.live + 1).min(self.n()),
            tk: (c.tk + 1) % self.ticket_modulus(),
        }
    }
    /// The lap ticket `tk` writes (never 0 on the first lap, so fresh zero words read as
    /// unwritten).
    #[inline]
    fn lap_of(&self, tk: u64) -> u64 {
        (tk / self.n() + 1) & ((1 << self.lap_bits()) - 1)
    }
    #[inline]
    fn entry_lap(&self, e: u32) -> u64 {
        u64::from(e >> self.slot.epochs.offset_bits())
    }
    #[inline]
    fn entry(&self, tk: u64) -> Half<'a> {
        Half::at(self.words, self.ring + (tk % self.n()) as usize)
    }
    #[inline]
    fn counter_half(&self) -> Half<'a> {
        Half::at(self.words, self.counter)
    }

    /// The lowest timestamp a live entry of a log at epoch `e` holds.
    #[inline]
    fn lower(&self, e: u64) -> i64 {
        (e as i64 - 1) * self.slot.epochs.len() - self.window_ms
    }
    /// The timestamp entry `v` holds in a log at epoch `e`: the one congruent to it modulo M
    /// at or above `lower(e)` (exact within the invariant's range, later below it).
    #[inline]
    fn decode(&self, v: u32, e: u64) -> i64 {
        let m = 4 * self.slot.epochs.len();
        let lo = self.lower(e);
        let r = i64::from(v) & (m - 1);
        lo + (r - lo).rem_euclid(m)
    }
    #[inline]
    fn encode(&self, t: i64, lap: u64, e: u64) -> u32 {
        let m = 4 * self.slot.epochs.len();
        let ts = t.max(self.lower(e));
        ((lap << self.slot.epochs.offset_bits()) as u32) | (ts & (m - 1)) as u32
    }
    /// The epoch a log with counter `c` is at, given the slot epoch word `w`.
    #[inline]
    fn epoch_of(&self, c: Counter, w: u64) -> u64 {
        if c.ep == phase(w) {
            cur_epoch(w)
        } else {
            prev_epoch(w)
        }
    }

    /// Read the state for the next ticket and decide whether a request at `t` is admitted.
    /// A writer (`write`) first brings the log's epoch up to `t`'s; a reader never writes
    /// but for helping a claimed ticket forward.
    pub(crate) fn observe(
        &self,
        t: i64,
        write: bool,
        logs: &[NarrowLog<'_>],
    ) -> Result<Observed, Contended> {
        let n = self.n();
        for _ in 0..MAX_RETRIES {
            let craw = self.counter_half().load();
            let w = self.slot.word.load(Ordering::Acquire);
            let c = self.unpack(craw);
            let e_log = self.epoch_of(c, w);
            if write && self.slot.epochs.of(t) > e_log {
                if self.slot.epochs.of(t) > cur_epoch(w) {
                    advance_slot(self.slot, logs, t)?;
                }
                let _ = self.scrub_to(cur_epoch(self.slot.word.load(Ordering::Acquire)));
                continue;
            }
            let slot = self.entry(c.tk);
            let e = slot.load();
            let lap = self.lap_of(c.tk);
            if self.entry_lap(e) == lap {
                // Ticket `tk` is claimed but the counter not yet advanced: help, then retry.
                let _ = self.counter_half().cas(craw, self.pack(self.advanced(c)));
                continue;
            }
            if self.counter_half().load() != craw {
                continue;
            }
            let nth_ts = (c.live >= n).then(|| self.decode(e, e_log));
            let floor = t.saturating_sub(self.window_ms);
            let admit = nth_ts.unwrap_or(self.lower(e_log)) <= floor;
            return Ok(Observed {
                counter: craw,
                entry: e,
                idx: c.tk % n,
                lap,
                epoch: e_log,
                nth_ts,
                admit,
            });
        }
        Err(Contended)
    }

    /// Log a request at `t` on the ticket `obs` was read for; `Err` if another thread took it.
    pub(crate) fn claim(&self, obs: &Observed, t: i64) -> Result<(), ()> {
        let new = self.encode(t, obs.lap, obs.epoch);
        Half::at(self.words, self.ring + obs.idx as usize)
            .cas(obs.entry, new)
            .map_err(|_| ())?;
        let c = self.unpack(obs.counter);
        let _ = self
            .counter_half()
            .cas(obs.counter, self.pack(self.advanced(c)));
        Ok(())
    }

    /// Undo a claim when a later rule of the same request lost its race: keep our lap (the
    /// ticket stays used) with the predecessor's value, or `lower(e)` if it was old.
    pub(crate) fn give_back(&self, obs: &Observed, t: i64) {
        let ours = self.encode(t, obs.lap, obs.epoch);
        let ts = obs.nth_ts.unwrap_or(self.lower(obs.epoch));
        let restored = self.encode(ts, obs.lap, obs.epoch);
        let _ = Half::at(self.words, self.ring + obs.idx as usize).cas(ours, restored);
    }

    /// Log a request at `t` whatever the window holds (strict rules, failure logs).
    pub(crate) fn push(&self, t: i64, logs: &[NarrowLog<'_>]) -> Result<Observed, Contended> {
        for _ in 0..MAX_RETRIES {
            let obs = self.observe(t, true, logs)?;
            if self.claim(&obs, t).is_ok() {
                return Ok(obs);
            }
        }
        Err(Contended)
    }

    /// Forget every logged request: `live` to 0, one CAS (the table's fence goes before it).
    pub(crate) fn clear(&self) {
        loop {
            let craw = self.counter_half().load();
            let c = self.unpack(craw);
            let claimed = self.entry_lap(self.entry(c.tk).load()) == self.lap_of(c.tk);
            if c.live == 0 && !claimed {
                return;
            }
            if claimed {
                // Help the claimed ticket in first, so that the clear covers it.
                let _ = self.counter_half().cas(craw, self.pack(self.advanced(c)));
                continue;
            }
            let cleared = self.pack(Counter { live: 0, ..c });
            if self.counter_half().cas(craw, cleared).is_ok() {
                return;
            }
        }
    }

    /// Move the log to epoch `target` (at most the slot's current one): tickets, oldest first,
    /// whose timestamp is below `lower(target)` go under the floor.
    fn scrub_to(&self, target: u64) -> Result<(), Contended> {
        for _ in 0..MAX_RETRIES {
            let craw = self.counter_half().load();
            let w = self.slot.word.load(Ordering::Acquire);
            let c = self.unpack(craw);
            let e = self.epoch_of(c, w);
            if e >= target || target != cur_epoch(w) {
                return Ok(());
            }
            let low = self.lower(target);
            let m = self.ticket_modulus();
            let mut gone = 0;
            while gone < c.live {
                let k = (c.tk + m - c.live + gone) % m;
                if self.decode(self.entry(k).load(), e) >= low {
                    break;
                }
                gone += 1;
            }
            let moved = Counter {
                ep: phase(w),
                live: c.live - gone,
                tk: c.tk,
            };
            if self.counter_half().cas(craw, self.pack(moved)).is_ok() {
                return Ok(());
            }
        }
        Err(Contended)
    }

    /// The live logged timestamps, oldest first.
    pub(crate) fn logged(&self) -> Vec<i64> {
        let c = self.unpack(self.counter_half().load());
        let e = self.epoch_of(c, self.slot.word.load(Ordering::Acquire));
        let m = self.ticket_modulus();
        (0..c.live)
            .map(|i| self.decode(self.entry((c.tk + m - c.live + i) % m).load(), e))
            .collect()
    }

    /// Logged timestamps later than `t - W` (the newest first, stopping at the first outside:
    /// the log is in time order when time does not go backwards).
    pub(crate) fn in_window(&self, t: i64) -> u32 {
        let logged = self.logged();
        let floor = t.saturating_sub(self.window_ms);
        logged.iter().rev().take_while(|&&ts| ts > floor).count() as u32
    }
}

/// Advance the slot epoch to `t`'s: every log still at the previous epoch is moved to the
/// current one first, so that after the flip every log reads as at the (new) previous one.
fn advance_slot(slot: SlotEpoch<'_>, logs: &[NarrowLog<'_>], t: i64) -> Result<(), Contended> {
    let target = slot.epochs.of(t);
    for _ in 0..MAX_RETRIES {
        let w = slot.word.load(Ordering::Acquire);
        if cur_epoch(w) >= target {
            return Ok(());
        }
        for log in logs {
            log.scrub_to(cur_epoch(w))?;
        }
        let flipped = u64::from(phase(w) ^ 1) << 63 | cur_epoch(w) << 32 | target;
        if slot
            .word
            .compare_exchange(w, flipped, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(Contended)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Words for one slot: the epoch word, then `rings.len()` logs' counters and rings.
    struct Slot {
        epoch: AtomicU64,
        words: Vec<AtomicU64>,
        layout: Vec<(usize, usize, u32, i64)>,
        epochs: Epochs,
    }

    impl Slot {
        fn new(rules: &[(u32, i64)]) -> Slot {
            let longest = rules.iter().map(|r| r.1).max().unwrap();
            let epochs = Epochs::for_window(longest).unwrap();
            let mut h = rules.len(); // counters first, then rings
            let layout = rules
                .iter()
                .enumerate()
                .map(|(i, &(n, w))| {
                    let ring = h;
                    h += n as usize;
                    (i, ring, n, w)
                })
                .collect();
            Slot {
                epoch: AtomicU64::new(0),
                words: (0..h.div_ceil(2)).map(|_| AtomicU64::new(0)).collect(),
                layout,
                epochs,
            }
        }
        fn logs(&self) -> Vec<NarrowLog<'_>> {
            self.layout
                .iter()
                .map(|&(counter, ring, n, window_ms)| NarrowLog {
                    words: &self.words,
                    counter,
                    ring,
                    n,
                    window_ms,
                    slot: SlotEpoch {
                        word: &self.epoch,
                        epochs: self.epochs,
                    },
                })
                .collect()
        }
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// The serial model: admitted iff fewer than N logged timestamps are in (t - W, ...].
    fn model_admits(logged: &[i64], n: u32, w: i64, t: i64) -> bool {
        logged.iter().filter(|&&ts| ts > t - w).count() < n as usize
    }

    const T0: i64 = 1_767_225_600_000;

    /// Checks at every pace, for years of simulated time, decide as the serial model; the
    /// logs hold exactly the model's live timestamps.
    fn run_against_model(rules: &[(u32, i64)], steps: usize, gap: impl Fn(&mut Rng) -> i64) {
        let slot = Slot::new(rules);
        let logs = slot.logs();
        let mut model: Vec<Vec<i64>> = vec![Vec::new(); rules.len()];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut t = T0;
        for step in 0..steps {
            t += gap(&mut rng);
            let r = rng.below(rules.len() as u64) as usize;
            let (n, w) = rules[r];
            if rng.below(500) == 0 {
                logs[r].clear();
                model[r].clear();
            }
            let obs = logs[r].observe(t, true, &logs).unwrap();
            let want = model_admits(&model[r], n, w, t);
            assert_eq!(obs.admit, want, "rule {r} step {step} t {t}");
            if obs.admit {
                logs[r].claim(&obs, t).unwrap();
                model[r].push(t);
            }
            let keep = model[r].len().saturating_sub(n as usize);
            model[r].drain(..keep);
            assert_eq!(
                logs[r].in_window(t),
                model[r].iter().filter(|&&ts| ts > t - w).count() as u32,
                "rule {r} step {step}"
            );
            // Whatever is live is exactly the model's newest entries.
            let live = logs[r].logged();
            assert_eq!(&model[r][model[r].len() - live.len()..], &live[..]);
        }
    }

    #[test]
    fn geometry_of_the_default_policy() {
        let e = Epochs::for_window(3_600_000).unwrap();
        assert_eq!((e.shift, e.offset_bits()), (22, 24));
        for n in [300, 60, 120, 30, 500, 10, 5] {
            assert!(NarrowLog::fits(n, e), "N {n}");
        }
        // 18.6 hours is the longest window of 4-byte entries; 30 days is not one.
        assert!(Epochs::for_window(1 << 26).is_some());
        assert!(Epochs::for_window((1 << 26) + 1).is_none());
        assert!(Epochs::for_window(30 * 86_400_000).is_none());
    }

    #[test]
    fn a_busy_key_decides_as_the_serial_model() {
        run_against_model(&[(5, 1_000), (3, 60_000), (50, 3_600_000)], 20_000, |r| {
            r.below(700) as i64
        });
    }

    /// One request every 40 % of the window, below the limit, for years: entries many
    /// windows old stay in the ring, and must never decode as recent.
    #[test]
    fn a_slow_steady_key_decides_as_the_serial_model_for_years() {
        let w = 3_600_000;
        run_against_model(&[(300, w), (10, 60_000)], 60_000, |r| {
            w * 2 / 5 + r.below(1_000) as i64
        });
    }

    /// Idle for weeks to months between bursts: ages far past 49.7 days and past every
    /// multiple of the modulus.
    #[test]
    fn long_idle_gaps_decide_as_the_serial_model() {
        run_against_model(&[(4, 60_000), (2, 3_600_000)], 4_000, |r| {
            if r.below(8) == 0 {
                (1 + r.below(90)) as i64 * 86_400_000 + r.below(1 << 30) as i64
            } else {
                r.below(30_000) as i64
            }
        });
    }

    /// A clock that steps backwards (by up to hours) never lets N + 1 admitted requests into
    /// one window.
    #[test]
    fn a_clock_stepping_backwards_never_over_admits() {
        for &(n, w) in &[(1u32, 1_000i64), (3, 60_000), (20, 3_600_000)] {
            let slot = Slot::new(&[(n, w)]);
            let logs = slot.logs();
            let mut rng = Rng(0x1234_5678_9abc_def1 ^ w as u64);
            let mut t = T0;
            let mut admitted = Vec::new();
            for _ in 0..20_000 {
                t += rng.below(w as u64 / 2 + 2) as i64 + rng.below(8) as i64 * w;
                match rng.below(50) {
                    0 => t -= rng.below(3 * 3_600_000) as i64,
                    // Back to just after an earlier admission, across epochs: what a clock
                    // step does to entries already under the floor.
                    1 if !admitted.is_empty() => {
                        let i = rng.below(admitted.len() as u64) as usize;
                        t = admitted[i] + rng.below(w as u64) as i64;
                    }
                    _ => {}
                }
                let obs = logs[0].observe(t, true, &logs).unwrap();
                if obs.admit {
                    logs[0].claim(&obs, t).unwrap();
                    admitted.push(t);
                }
            }
            admitted.sort_unstable();
            for i in n as usize..admitted.len() {
                assert!(
                    admitted[i] - admitted[i - n as usize] >= w,
                    "N {n} W {w}: {} admitted within {} ms",
                    n + 1,
                    admitted[i] - admitted[i - n as usize]
                );
            }
        }
    }

    /// A pushed request is logged even when the window is full; a claim given back keeps
    /// its ticket used but carries the predecessor's time, so it admits nothing more.
    #[test]
    fn push_logs_regardless_and_give_back_restores_the_older_time() {
        let slot = Slot::new(&[(2, 1_000)]);
        let logs = slot.logs();
        let log = logs[0];
        for dt in [0, 1, 2] {
            log.push(T0 + dt, &logs).unwrap();
        }
        assert_eq!(log.logged(), vec![T0 + 1, T0 + 2]);
        let obs = log.observe(T0 + 1_001, true, &logs).unwrap();
        assert!(obs.admit && obs.nth_ts == Some(T0 + 1));
        log.claim(&obs, T0 + 1_001).unwrap();
        log.give_back(&obs, T0 + 1_001);
        assert_eq!(log.logged(), vec![T0 + 2, T0 + 1]);
        // The given-back ticket reads as the request it replaced: at T0 + 1_001 one of the
        // two is inside the window, so one more is admitted and then the window is full.
        let obs = log.observe(T0 + 1_001, true, &logs).unwrap();
        assert!(
            !obs.admit,
            "T0 + 2 is the N-th most recent and inside the window"
        );
        log.clear();
        assert_eq!(log.logged(), Vec::<i64>::new());
        assert!(log.observe(T0 + 1_001, true, &logs).unwrap().admit);
    }
}

/// Loom models of the format-2 pieces: a slot epoch advance (with its scrubs) racing a claim,
/// and a reader stalled across an epoch. Run with the other loom models.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    const W: i64 = 1_000;

    struct Words {
        epoch: AtomicU64,
        words: Vec<AtomicU64>,
    }

    /// One log of N = 1 and window W (counter at half 0, entry at half 1).
    fn log(w: &Words) -> NarrowLog<'_> {
        NarrowLog {
            words: &w.words,
            counter: 0,
            ring: 1,
            n: 1,
            window_ms: W,
            slot: SlotEpoch {
                word: &w.epoch,
                epochs: Epochs::for_window(W).unwrap(),
            },
        }
    }

    fn check(w: &Words, t: i64) -> bool {
        let l = log(w);
        for _ in 0..MAX_RETRIES {
            let Ok(obs) = l.observe(t, true, &[l]) else {
                return false;
            };
            if !obs.admit {
                return false;
            }
            if l.claim(&obs, t).is_ok() {
                return true;
            }
        }
        false
    }

    /// The last epoch boundary before 2^41 ms, and a log holding one request 2 s before it.
    fn setup() -> (Arc<Words>, i64) {
        let e = 1i64 << Epochs::for_window(W).unwrap().shift;
        let boundary = (1i64 << 41) / e * e;
        let w = Arc::new(Words {
            epoch: AtomicU64::new(0),
            words: (0..1).map(|_| AtomicU64::new(0)).collect(),
        });
        assert!(check(&w, boundary - 2_000));
        (w, boundary)
    }

    /// A check in the next epoch (which advances the slot and scrubs the log) races a check
    /// in the current one, 600 ms apart with W = 1 s: at most one is admitted, and the log
    /// holds exactly the admitted one.
    #[test]
    fn loom_an_epoch_advance_racing_a_claim_admits_at_most_one() {
        loom::model(|| {
            let (w, boundary) = setup();
            let (early, late) = (boundary - 500, boundary + 100);
            let w2 = w.clone();
            let a = thread::spawn(move || check(&w2, late));
            let b = check(&w, early);
            let a = a.join().unwrap();
            assert!(!(a && b), "both admitted within {} ms", late - early);
            let logged = log(&w).logged();
            let want: Vec<i64> = match (b, a) {
                (_, true) => vec![late],
                (true, false) => vec![early],
                _ => vec![boundary - 2_000],
            };
            assert_eq!(logged, want);
        });
    }

    /// A reader that read the log in one epoch and claims after another thread moved the
    /// slot to the next epoch and logged there: its claim fails, no two admissions within W.
    #[test]
    fn loom_a_reader_stalled_across_an_epoch_never_over_admits() {
        loom::model(|| {
            let (w, boundary) = setup();
            let stalled_at = boundary - 900;
            let l = log(&w);
            let obs = l.observe(stalled_at, true, &[l]).unwrap();
            assert!(obs.admit);
            let w2 = w.clone();
            let other = thread::spawn(move || check(&w2, boundary + 50));
            let ours = l.claim(&obs, stalled_at).is_ok();
            let other = other.join().unwrap();
            assert!(!(ours && other), "both admitted within 950 ms");
            assert!(ours || other, "one of them is admitted");
        });
    }
}
