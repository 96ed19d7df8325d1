//! The exact sliding-window log of one key and one rule: a ticket counter and a ring of the
//! last N logged timestamps, updated lock-free (ARCHITECTURE.md §4 has the protocol and the proof).
//!
//! Words (all `AtomicU64`, all inside the table region):
//!
//! * **counter** = `gen << 56 | ticket`. `ticket` counts the requests logged since the log was
//!   last cleared; `gen` is bumped by every clear (a key's `reset`, a lockout clearing its
//!   failures, a slot taken over by another key), which sets `ticket` back to 0.
//! * **entry** = `(ts + 1) << 22 | lap << 8 | gen`. Ticket `k` writes the entry at `k mod N`
//!   with `lap = k / N + 1` (14 bits, wrapping) and the counter's `gen`. An entry whose `gen`
//!   is not the counter's, or whose lap is neither of the two a reader expects, was not
//!   written in this incarnation of the log and reads as "never written": so clearing a log is
//!   one store to its counter, not a pass over N entries.
//!
//! For ticket `n`, the entry at `n mod N` is the one ticket `n - N` wrote (lap `lap(n) - 1`):
//! the N-th most recent logged request. A request at `t` is admitted iff that entry was never
//! written or its timestamp is at or before `t - W` — the O(1) admit decision. Claiming ticket
//! `n` is a CAS of that entry to `(t, lap(n))`; advancing the counter is a CAS that any thread
//! may do once it sees the entry at `lap(n)` ("helping"), so nobody waits for anybody.

use super::{Fence, Lost};
use crate::sync::{AtomicU64, Ordering};

const TS_SHIFT: u32 = 22;
const LAP_SHIFT: u32 = 8;
const LAP_MASK: u64 = (1 << 14) - 1;
const GEN_MASK: u64 = 0xff;
const TICKET_MASK: u64 = (1 << 56) - 1;

/// How often a reader re-reads after racing a writer before it gives up (and the caller
/// refuses, which is always safe). Each retry means another thread made progress.
const MAX_RETRIES: usize = 64;

#[inline]
fn ticket(counter: u64) -> u64 {
    counter & TICKET_MASK
}
#[inline]
fn counter_gen(counter: u64) -> u64 {
    counter >> 56
}
#[inline]
fn lap_of(ticket: u64, n: u64) -> u64 {
    (ticket / n + 1) & LAP_MASK
}
#[inline]
fn pack(ts: i64, lap: u64, gen: u64) -> u64 {
    ((ts as u64 + 1) << TS_SHIFT) | (lap << LAP_SHIFT) | gen
}
#[inline]
fn entry_lap(e: u64) -> u64 {
    (e >> LAP_SHIFT) & LAP_MASK
}
#[inline]
fn entry_gen(e: u64) -> u64 {
    e & GEN_MASK
}
/// Timestamp of an entry, `None` if never written.
#[inline]
fn entry_ts(e: u64) -> Option<i64> {
    let raw = e >> TS_SHIFT;
    if raw == 0 {
        None
    } else {
        Some(raw as i64 - 1)
    }
}

/// Rings longer than this get a window hint (when the key's state has a free word for it):
/// a bisection over a shorter one is already at most four probes.
pub(crate) const HINT_MIN_RING: u32 = 16;

/// One log: a counter word and its ring, with the rule's limit and window, and its hint
/// word if it has one (see [`SlidingLog::summary_below`]).
#[derive(Clone, Copy)]
pub(crate) struct SlidingLog<'a> {
    pub counter: &'a AtomicU64,
    pub ring: &'a [AtomicU64],
    pub window_ms: i64,
    pub hint: HintWord<'a>,
}

/// Where a log's window hint lives: word `at` of `words` (the key's state), none if `at` is
/// 0 (word 0 of a state is never a hint). Looked up only when a count needs it, so a check
/// that counts nothing pays nothing for it.
///
/// The hint is the ticket of the oldest logged request the last count found in the window:
/// where the next count starts looking. Advisory only: every value of it, stale, of another
/// generation or garbage, gives the same count (a bad one only costs probes), so it is read
/// and written with relaxed ordering and is no part of the log's protocol.
#[derive(Clone, Copy)]
pub(crate) struct HintWord<'a> {
    pub words: &'a [AtomicU64],
    pub at: usize,
}

impl<'a> HintWord<'a> {
    pub(crate) const NONE: HintWord<'static> = HintWord { words: &[], at: 0 };

    #[inline]
    fn get(self) -> Option<&'a AtomicU64> {
        if self.at == 0 {
            None
        } else {
            self.words.get(self.at)
        }
    }
}

/// What a reader saw of a log for the next ticket: enough to decide and to claim.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observed {
    counter: u64,
    /// The raw entry at `ticket mod N` (the CAS's expected value).
    entry: u64,
    /// `ticket mod N` and the ticket's lap, computed once (a division) by the read.
    idx: u64,
    lap: u64,
    /// Timestamp of the N-th most recent logged request, if there is one.
    pub nth_ts: Option<i64>,
    /// Would a request at `t` be admitted?
    pub admit: bool,
}

impl Observed {
    /// Placeholder before the first read (never claimed with: a claim needs a real read).
    pub(crate) const UNREAD: Observed = Observed {
        counter: 0,
        entry: 0,
        idx: 0,
        lap: 0,
        nth_ts: None,
        admit: false,
    };
}

/// A read of the log for reporting: how many logged timestamps lie in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Logged timestamps later than `t - W` ("in the future" ones count).
    pub in_window: u32,
    /// The oldest of them.
    pub oldest_in_window: Option<i64>,
    /// The N-th most recent logged timestamp (what the next admit decision compares with).
    pub nth_ts: Option<i64>,
}

impl Summary {
    /// The window of a rule that refuses on a read that found `nth_ts`, the N-th most recent
    /// logged timestamp, inside the window: then all of the last N are (the log is in time
    /// order), and the oldest of them is that one. No search needed.
    #[inline]
    pub(crate) fn of_refusal(limit: u32, nth_ts: Option<i64>) -> Summary {
        Summary {
            in_window: limit,
            oldest_in_window: nth_ts,
            nth_ts,
        }
    }
}

/// The race was lost too many times in a row; the caller treats the request as refused.
#[derive(Debug)]
pub(crate) struct Contended;

impl<'a> SlidingLog<'a> {
    #[inline]
    fn n(&self) -> u64 {
        self.ring.len() as u64
    }

    /// The timestamp ticket `k` wrote, if the entry still holds it in generation `gen`.
    #[inline]
    fn ts_of_ticket(&self, k: u64, gen: u64) -> Option<i64> {
        let e = self.ring[(k % self.n()) as usize].load(Ordering::Acquire);
        if entry_gen(e) == gen && entry_lap(e) == lap_of(k, self.n()) {
            entry_ts(e)
        } else {
            None
        }
    }

    /// Prefetch the ring entry the next check will compare with (the one at the counter's
    /// ticket mod N). A hint only: the counter read here decides nothing.
    #[inline]
    pub(crate) fn prefetch_next(&self) {
        let tk = ticket(self.counter.load(Ordering::Relaxed));
        crate::sync::prefetch(&self.ring[(tk % self.n()) as usize]);
    }

    /// Read the state for the next ticket and decide whether a request at `t` is admitted.
    #[inline(always)]
    pub(crate) fn observe(&self, t: i64) -> Result<Observed, Contended> {
        let n = self.n();
        for _ in 0..MAX_RETRIES {
            let c = self.counter.load(Ordering::Acquire);
            let (tk, gen) = (ticket(c), counter_gen(c));
            let slot = &self.ring[(tk % n) as usize];
            let e = slot.load(Ordering::Acquire);
            let lap = lap_of(tk, n);
            let valid = entry_gen(e) == gen;
            if valid && entry_lap(e) == lap {
                // Ticket `tk` is claimed but the counter not yet advanced: help, then retry.
                let _ =
                    self.counter
                        .compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            // The entry must be read while the counter still says `tk`; otherwise it may be
            // a later lap's and the claim below would overwrite it.
            if self.counter.load(Ordering::Acquire) != c {
                continue;
            }
            let prev = (lap + LAP_MASK) & LAP_MASK;
            let nth_ts = if valid && entry_lap(e) == prev {
                entry_ts(e)
            } else {
                None // never written in this generation
            };
            let admit = match nth_ts {
                None => true,
                Some(ts) => ts <= t.saturating_sub(self.window_ms),
            };
            return Ok(Observed {
                counter: c,
                entry: e,
                idx: tk % n,
                lap,
                nth_ts,
                admit,
            });
        }
        Err(Contended)
    }

    /// Log a request at `t` on the ticket `obs` was read for. Fails if another thread took
    /// that ticket first (or the log was cleared): the caller must read again.
    #[inline]
    pub(crate) fn claim(&self, obs: &Observed, t: i64) -> Result<(), ()> {
        let new = pack(t, obs.lap, counter_gen(obs.counter));
        self.ring[obs.idx as usize]
            .compare_exchange(obs.entry, new, Ordering::AcqRel, Ordering::Relaxed)
            .map_err(|_| ())?;
        // Advance; if this fails, another thread already helped.
        let _ = self.counter.compare_exchange(
            obs.counter,
            obs.counter + 1,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Undo a claim made by [`SlidingLog::claim`] when a later rule of the same request lost its
    /// race: restore the timestamp the entry held, keeping our lap, so the ticket stays used
    /// but carries the older time. If the entry has moved on, leave it: a logged request that
    /// was not admitted only makes the limiter stricter.
    pub(crate) fn give_back(&self, obs: &Observed, t: i64) {
        let gen = counter_gen(obs.counter);
        let lap = obs.lap;
        let ours = pack(t, lap, gen);
        let restored = match obs.nth_ts {
            Some(ts) => pack(ts, lap, gen),
            None => (lap << LAP_SHIFT) | gen,
        };
        let _ = self.ring[obs.idx as usize].compare_exchange(
            ours,
            restored,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Log a request at `t` whatever the window holds (strict rules log refusals; failure
    /// logs record every failure): the read of the ticket it took (for
    /// [`SlidingLog::claimed_summary`]). Best effort under races: gives up after `MAX_RETRIES`.
    pub(crate) fn push(&self, t: i64) -> Result<Observed, Contended> {
        for _ in 0..MAX_RETRIES {
            let obs = self.observe(t)?;
            if self.claim(&obs, t).is_ok() {
                return Ok(obs);
            }
        }
        Err(Contended)
    }

    /// Forget every logged request: bump the generation and restart the tickets at 0, while
    /// `fence` says the state still belongs to the caller's key (`Err(Lost)` once it does
    /// not; then nothing more is written). Every CAS here expects a value read *before* the
    /// fence's check, which is what makes a stale clearer harmless (ARCHITECTURE.md §3).
    ///
    /// A log holding nothing of its generation is left as it is, so that clearing an empty
    /// log (a `success` after a `success`) costs no generation. Generations are 8 bits and
    /// entries are never rewritten by a clear, so the clear that wraps the generation back
    /// to 0 first scrubs the ring: every entry of another generation goes to 0, then the
    /// counter moves, then the entries of the generation that just ended go too. Within one
    /// cycle of 256 generations, an entry carrying generation `g` was therefore written by
    /// generation `g` of this cycle, and no number of clears can make an old entry read as
    /// current (without contention; a thread stalled between its read and its claim across
    /// a whole wrap can leave one stale entry, which only ever makes the log stricter).
    pub(crate) fn clear(&self, fence: &impl Fence) -> Result<(), Lost> {
        loop {
            let c = self.counter.load(Ordering::Acquire);
            if self.holds_nothing(c) {
                return Ok(());
            }
            let gen = counter_gen(c);
            let next = (gen + 1) & GEN_MASK;
            if next == 0 {
                self.scrub(fence, |g| g != gen)?;
            }
            if !fence.holds() {
                return Err(Lost);
            }
            if self
                .counter
                .compare_exchange(c, next << 56, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if next == 0 {
                    self.scrub(fence, |g| g == gen)?;
                }
                return Ok(());
            }
        }
    }

    /// Nothing is logged in the counter `c`'s generation: no ticket advanced, and ticket 0
    /// not claimed either.
    #[inline]
    fn holds_nothing(&self, c: u64) -> bool {
        if ticket(c) != 0 {
            return false;
        }
        let e = self.ring[0].load(Ordering::Acquire);
        !(entry_gen(e) == counter_gen(c) && entry_lap(e) == lap_of(0, self.n()))
    }

    /// Set every entry whose generation `doomed` selects to 0, each by a CAS from a value read
    /// before a check of the fence (a chunk of entries per check).
    fn scrub(&self, fence: &impl Fence, doomed: impl Fn(u64) -> bool) -> Result<(), Lost> {
        const CHUNK: usize = 32;
        let mut seen = [0u64; CHUNK];
        for words in self.ring.chunks(CHUNK) {
            let mut any = false;
            for (w, s) in words.iter().zip(seen.iter_mut()) {
                *s = w.load(Ordering::Acquire);
                any |= *s != 0 && doomed(entry_gen(*s));
            }
            if !any {
                continue;
            }
            if !fence.holds() {
                return Err(Lost);
            }
            for (w, &e) in words.iter().zip(seen.iter()) {
                if e != 0 && doomed(entry_gen(e)) {
                    // A failure means the entry was written meanwhile (a claim of the current
                    // generation): it is not ours to erase.
                    let _ = w.compare_exchange(e, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Write `logged` (oldest first, at most N) into a log that holds nothing and that no
    /// other thread uses: the log then holds exactly those timestamps, in that order.
    pub(crate) fn restore(&self, logged: &[i64]) {
        let n = self.n();
        let gen = counter_gen(self.counter.load(Ordering::Relaxed));
        for (k, &ts) in logged.iter().enumerate() {
            let k = k as u64;
            self.ring[(k % n) as usize].store(pack(ts, lap_of(k, n), gen), Ordering::Relaxed);
        }
        self.counter
            .store(gen << 56 | logged.len() as u64, Ordering::Release);
    }

    /// The logged timestamps (the last N at most), oldest first: what [`SlidingLog::restore`]
    /// takes back.
    pub(crate) fn logged(&self) -> Vec<i64> {
        let c = self.counter.load(Ordering::Acquire);
        let (tk, gen) = (ticket(c), counter_gen(c));
        let first = tk.saturating_sub(self.n());
        (first..tk)
            .filter_map(|k| self.ts_of_ticket(k, gen))
            .collect()
    }

    /// Count the logged timestamps in the window `(t - W, ...]` over the last N tickets (they
    /// are in time order when time does not go backwards): the newest two tickets first, then
    /// a binary search. One or two probes when the window holds at most one request besides
    /// the newest (a light client, the common case: 1 instead of log2 N), at most two more
    /// than a plain binary search otherwise.
    pub(crate) fn summarize(&self, t: i64) -> Summary {
        self.summary(t, true)
    }

    /// [`SlidingLog::summarize`] without `nth_ts` (left `None`), which only a refusal reports: one
    /// probe fewer on the admit path.
    #[inline]
    pub(crate) fn window_summary(&self, t: i64) -> Summary {
        self.summary(t, false)
    }

    /// The window of a check that claimed `obs`'s ticket at `t`, counted back from that
    /// ticket (its own request included): the ring index and lap come from the read, so
    /// this needs neither a counter read nor a division. Requests logged by others since
    /// then are not counted; the report is of the window as this request found it.
    #[inline]
    pub(crate) fn claimed_summary(&self, obs: &Observed, t: i64) -> Summary {
        let n = self.n();
        let (tk, gen) = (ticket(obs.counter), counter_gen(obs.counter));
        let ours = Summary {
            in_window: 1,
            oldest_in_window: Some(t),
            nth_ts: None,
        };
        if tk == 0 || n == 1 {
            return ours; // ours is the only request the last N can hold
        }
        // The ticket before ours first: for a light client it is already outside the window,
        // and that one probe is the whole count.
        let (prev_idx, prev_lap) = if obs.idx == 0 {
            (n - 1, (obs.lap + LAP_MASK) & LAP_MASK)
        } else {
            (obs.idx - 1, obs.lap)
        };
        let e = self.ring[prev_idx as usize].load(Ordering::Acquire);
        let prev_ts = entry_ts(e).filter(|&ts| {
            entry_gen(e) == gen && entry_lap(e) == prev_lap && ts > t.saturating_sub(self.window_ms)
        });
        if prev_ts.is_none() {
            return ours;
        }
        let (idx, lap) = if obs.idx + 1 == n {
            (0, (obs.lap + 1) & LAP_MASK)
        } else {
            (obs.idx + 1, obs.lap)
        };
        // Our own entry (d = 1) and the one before (d = 2) are in the window: the search
        // starts past them.
        self.summary_below(tk + 1, idx, lap, gen, t, (2, prev_ts), false)
    }

    /// The window a strict rule that refuses on `obs` would have once the refused request
    /// were logged at the next ticket, without logging it (what a peek reports, so that it
    /// says what a check would): all of the last N are then in the window, and the oldest
    /// of them, the new N-th most recent, is the one logged N - 1 tickets before.
    pub(crate) fn refusal_if_logged(&self, obs: &Observed, t: i64) -> Summary {
        let n = self.n();
        let gen = counter_gen(obs.counter);
        let back = n - 1;
        let oldest = if back == 0 {
            Some(t)
        } else {
            let (idx, lap) = if back <= obs.idx {
                (obs.idx - back, obs.lap)
            } else {
                (obs.idx + n - back, (obs.lap + LAP_MASK) & LAP_MASK)
            };
            let e = self.ring[idx as usize].load(Ordering::Acquire);
            if entry_gen(e) == gen && entry_lap(e) == lap {
                entry_ts(e)
            } else {
                None
            }
        };
        Summary {
            in_window: n as u32,
            oldest_in_window: oldest,
            nth_ts: oldest,
        }
    }

    /// Is the request logged `d - 1` tickets before the one `obs` claimed (`d = 1` is that
    /// one) inside the window at `t`? With the log in time order, that is exactly "at least
    /// `d` of the requests [`SlidingLog::claimed_summary`] counts are in the window", in one probe:
    /// how a multi-rule report rules out a rule without counting its window.
    #[inline]
    pub(crate) fn claimed_reaches(&self, obs: &Observed, t: i64, d: u64) -> bool {
        let n = self.n();
        let (tk, gen) = (ticket(obs.counter), counter_gen(obs.counter));
        if d == 0 {
            return true;
        }
        if d > n || d > tk + 1 {
            return false; // the ring holds fewer requests than that
        }
        // Ticket tk + 1 - d: its index and lap, stepping back from ours without a division.
        let back = d - 1;
        let (idx, lap) = if back <= obs.idx {
            (obs.idx - back, obs.lap)
        } else {
            (obs.idx + n - back, (obs.lap + LAP_MASK) & LAP_MASK)
        };
        let e = self.ring[idx as usize].load(Ordering::Acquire);
        entry_gen(e) == gen
            && entry_lap(e) == lap
            && entry_ts(e).is_some_and(|ts| ts > t.saturating_sub(self.window_ms))
    }

    #[inline]
    fn summary(&self, t: i64, with_nth: bool) -> Summary {
        let n = self.n();
        let c = self.counter.load(Ordering::Acquire);
        let hi = ticket(c);
        // One division for `hi`; every probe then steps back from its index and lap.
        let (hi_idx, hi_lap) = (hi % n, (hi / n + 1) & LAP_MASK);
        self.summary_below(hi, hi_idx, hi_lap, counter_gen(c), t, (0, None), with_nth)
    }

    /// The summary of the tickets below `hi` (whose ring index and lap are given) in
    /// generation `gen`, given that the newest `known.0` of them are in the window and the
    /// oldest of those has timestamp `known.1`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn summary_below(
        &self,
        hi: u64,
        hi_idx: u64,
        hi_lap: u64,
        gen: u64,
        t: i64,
        known: (u64, Option<i64>),
        with_nth: bool,
    ) -> Summary {
        let n = self.n();
        // Ticket `hi - d` for 1 <= d <= N, located without a division per probe.
        let ts_back = |d: u64| -> Option<i64> {
            let (idx, lap) = if d <= hi_idx {
                (hi_idx - d, hi_lap)
            } else {
                (hi_idx + n - d, (hi_lap + LAP_MASK) & LAP_MASK)
            };
            let e = self.ring[idx as usize].load(Ordering::Acquire);
            if entry_gen(e) == gen && entry_lap(e) == lap {
                entry_ts(e)
            } else {
                None
            }
        };
        let floor = t.saturating_sub(self.window_ms);
        let in_window = |d: u64| match ts_back(d) {
            Some(ts) if ts > floor => Some(ts),
            _ => None,
        };
        // Largest d in [0, span] such that ticket hi - d is in the window (0: none is), and
        // its timestamp. Invariant: `a` is in the window (or 0), everything past `b` is not.
        // With the log in time order, "ticket hi - d is in the window" is true up to that d
        // and false past it, so any search finds the same d: which probes it makes is a
        // matter of cost only.
        let span = hi.min(n);
        let (mut a, mut a_ts, mut b) = (known.0, known.1, span);
        let hint = if b - a > 2 { self.hint.get() } else { None };
        let hinted = hint.map(|w| w.load(Ordering::Relaxed));
        // The hint's distance back from `hi`, if it lies in the part still to search.
        match hinted
            .map(|h| hi.wrapping_sub(h))
            .filter(|&d| d > a && d <= b)
        {
            // Where the last count found the window's oldest. Time moves forward, so it is
            // most often one step newer than that, or there still: a probe on each side,
            // galloping (steps doubling) if it moved further.
            Some(d) => match in_window(d) {
                Some(ts) => {
                    (a, a_ts) = (d, Some(ts));
                    let mut step = 1;
                    while a < b {
                        let p = (a + step).min(b);
                        match in_window(p) {
                            Some(ts) => (a, a_ts, step) = (p, Some(ts), step * 2),
                            None => {
                                b = p - 1;
                                break;
                            }
                        }
                    }
                }
                None => {
                    b = d - 1;
                    let mut step = 1;
                    while a < b {
                        let p = b.saturating_sub(step - 1).max(a + 1);
                        match in_window(p) {
                            Some(ts) => {
                                (a, a_ts) = (p, Some(ts));
                                break;
                            }
                            None => (b, step) = (p - 1, step * 2),
                        }
                    }
                }
            },
            // No usable hint: the two newest first (most windows of most keys hold one or two
            // requests), then a plain bisection: at most two probes more than bisecting from
            // the start.
            None => {
                while a < b.min(known.0 + 2) {
                    match in_window(a + 1) {
                        Some(ts) => {
                            a += 1;
                            a_ts = Some(ts);
                        }
                        None => {
                            b = a;
                            break;
                        }
                    }
                }
            }
        }
        while a < b {
            let mid = b - (b - a) / 2;
            match in_window(mid) {
                Some(ts) => {
                    a = mid;
                    a_ts = Some(ts);
                }
                None => b = mid - 1,
            }
        }
        if let (Some(w), Some(h)) = (hint, hinted) {
            let found = hi - a;
            if a > 0 && found != h {
                w.store(found, Ordering::Relaxed);
            }
        }
        Summary {
            in_window: a as u32,
            oldest_in_window: a_ts,
            nth_ts: if with_nth && hi >= n {
                ts_back(n)
            } else {
                None
            },
        }
    }

    /// The most recent logged timestamp, if any (used to tell whether a key has expired).
    pub(crate) fn newest(&self) -> Option<i64> {
        let c = self.counter.load(Ordering::Acquire);
        let tk = ticket(c);
        if tk == 0 {
            None
        } else {
            self.ts_of_ticket(tk - 1, counter_gen(c))
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A log of `n` entries over fresh words.
    fn words(n: usize) -> (AtomicU64, Vec<AtomicU64>) {
        (
            AtomicU64::new(0),
            (0..n).map(|_| AtomicU64::new(0)).collect(),
        )
    }

    /// The summary by brute force over the timestamps pushed since the last clear.
    fn naive(pushed: &[i64], n: usize, w: i64, t: i64) -> Summary {
        let last: Vec<i64> = pushed.iter().rev().take(n).rev().copied().collect();
        let inside: Vec<i64> = last.iter().copied().filter(|&ts| ts > t - w).collect();
        Summary {
            in_window: inside.len() as u32,
            oldest_in_window: inside.first().copied(),
            nth_ts: (pushed.len() >= n).then(|| pushed[pushed.len() - n]),
        }
    }

    /// How a test log's hint word is kept.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Hint {
        /// No hint word (a ring without one).
        None,
        /// Left to the log, as the engine does.
        Kept,
        /// Overwritten before every count: with garbage, with a ticket near the right one,
        /// or with 0 (the padding of a table file made before hints).
        Scrambled,
    }

    /// summarize = a count over the last N timestamps, when time does not go
    /// backwards; across ring wraps, laps, clears and every window fill; with or without a
    /// hint, whatever the hint holds.
    #[test]
    fn summarize_matches_a_brute_force_count() {
        let mut x = 0x9E3779B97F4A7C15u64;
        let mut rnd = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let cases = [1usize, 2, 3, 7, 16, 100, 300]
            .into_iter()
            .flat_map(|n| [1i64, 5, 50, 1000].map(|w| (n, w)))
            .flat_map(|(n, w)| [false, true].map(|dense| (n, w, dense)))
            .flat_map(|c| [Hint::None, Hint::Kept, Hint::Scrambled].map(|h| (c, h)));
        for ((n, w, dense), mode) in cases {
            let (counter, ring) = words(n);
            let hint_words = [AtomicU64::new(0), AtomicU64::new(0)];
            let hint_word = &hint_words[1];
            let log = SlidingLog {
                counter: &counter,
                ring: &ring,
                window_ms: w,
                hint: HintWord {
                    words: &hint_words,
                    at: usize::from(mode != Hint::None),
                },
            };
            let ctx = format!("n {n} w {w} dense {dense} hint {mode:?}");
            // Dense: many requests a window (the ring fills, most of it in the window).
            let max_step = if dense { 2 } else { 2 * w as u64 / 3 + 2 };
            let mut pushed: Vec<i64> = Vec::new();
            let mut t = 1_000_000i64;
            for step in 0..(40 * n + 200) {
                t += rnd(max_step) as i64;
                if rnd(97) == 0 {
                    log.clear(&crate::engine::Unfenced).unwrap();
                    pushed.clear();
                }
                let scramble = |r: [u64; 3], hi: u64| {
                    if mode == Hint::Scrambled {
                        let v = match r[0] {
                            0 => r[1],
                            1 => 0,
                            _ => (hi + 2).saturating_sub(r[2]),
                        };
                        hint_word.store(v, Ordering::Relaxed);
                    }
                };
                // As a check does: observe, claim if admitted; sometimes push regardless.
                let obs = log.observe(t).unwrap();
                assert_eq!(obs.nth_ts, naive(&pushed, n, w, t).nth_ts, "{ctx}");
                // claimed_reaches(d) is "at least d counted": one probe per d, every d.
                let reaches = |obs: &Observed, pushed: &[i64]| {
                    let count = naive(pushed, n, w, t).in_window as u64;
                    for d in 0..=n as u64 + 1 {
                        assert_eq!(
                            log.claimed_reaches(obs, t, d),
                            count >= d,
                            "reaches: {ctx} d {d} count {count}"
                        );
                    }
                };
                let claimed = if obs.admit {
                    log.claim(&obs, t).unwrap();
                    Some(obs)
                } else if rnd(3) == 0 {
                    Some(log.push(t).unwrap())
                } else {
                    None
                };
                if let Some(obs) = claimed {
                    pushed.push(t);
                    let want = Summary {
                        nth_ts: None,
                        ..naive(&pushed, n, w, t)
                    };
                    scramble(
                        [rnd(4), rnd(u64::MAX), rnd(n as u64 + 4)],
                        pushed.len() as u64,
                    );
                    assert_eq!(log.claimed_summary(&obs, t), want, "claimed: {ctx}");
                    reaches(&obs, &pushed);
                }
                let probe = t + rnd(w as u64) as i64;
                scramble(
                    [rnd(4), rnd(u64::MAX), rnd(n as u64 + 4)],
                    pushed.len() as u64,
                );
                assert_eq!(
                    log.summarize(probe),
                    naive(&pushed, n, w, probe),
                    "{ctx} step {step}"
                );
                assert_eq!(log.newest(), pushed.last().copied());
            }
        }
    }
}
