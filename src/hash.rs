//! The keyed hash of keys.
//!
//! SipHash-1-3 (the `siphasher` crate) keyed with the table's 128-bit random secret. SipHash is
//! a keyed PRF designed against hash flooding (HashDoS), and its output is fixed by its
//! specification: the same key and secret give the same 64 bits in every build, on every CPU
//! and in every later version of sluice, which a table shared through a file needs (ahash,
//! foldhash and gxhash change output across versions or CPU features; they are not used).
//!
//! The 64-bit hash is split: the high bits choose the key's home slot and the low 54 bits are
//! the fingerprint stored in the index (see `table.rs`).

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

/// Hash `key` with the table's secret.
#[inline]
pub(crate) fn hash_key(secret: [u64; 2], key: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(secret[0], secret[1]);
    h.write(key);
    h.finish()
}

/// A fresh random secret for a new table.
pub(crate) fn random_secret() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: fall back to std's randomly seeded hasher mixed with the time and
        // the address of a stack value. Weaker, but still unpredictable from outside.
        use std::hash::{BuildHasher, Hash};
        let s = std::collections::hash_map::RandomState::new();
        let mut h = s.build_hasher();
        std::time::SystemTime::now().hash(&mut h);
        (&bytes as *const _ as usize).hash(&mut h);
        let a = h.finish();
        let b = s.hash_one(a);
        bytes[..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..].copy_from_slice(&b.to_le_bytes());
    }
    [
        u64::from_le_bytes(bytes[..8].try_into().unwrap()),
        u64::from_le_bytes(bytes[8..].try_into().unwrap()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_across_builds() {
        // Pinned values: if these change, every shared table file on disk would be read wrong.
        assert_eq!(hash_key([0, 0], b""), 0xd1fba762150c532c);
        assert_eq!(
            hash_key([1, 2], b"198.51.100.7"),
            hash_key([1, 2], b"198.51.100.7")
        );
        assert_ne!(hash_key([1, 2], b"a"), hash_key([1, 3], b"a"));
    }
}
