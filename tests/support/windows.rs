//! Replaying admitted timestamps: shared by the thread and the process stress tests.

/// The most of the timestamps `ts` (sorted here) that any window `(t - window_ms, t]` holds:
/// what an exact limit of N per window must keep at or below N.
pub fn max_in_any_window(ts: &mut [i64], window_ms: i64) -> usize {
    ts.sort_unstable();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..ts.len() {
        while ts[hi] - ts[lo] >= window_ms {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
