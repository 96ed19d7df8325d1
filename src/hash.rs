//! The keyed hash of keys.
//!
//! SipHash-1-3 keyed with the table's 128-bit random secret. SipHash is a keyed PRF designed
//! against hash flooding (HashDoS), and its output is fixed by its specification: the same key
//! and secret give the same 64 bits in every build, on every CPU and in every later version of
//! sluice, which a table shared through a file needs (ahash, foldhash and gxhash change output
//! across versions or CPU features; they are not used).
//!
//! It is written out here as a one-shot function over the key's bytes rather than through the
//! `siphasher` crate's streaming `Hasher` (which buffers its input): the hash is a sixth of a
//! hot-key check, and the one-shot form reads whole words and loads the tail in at most two
//! reads. A test checks it against `siphasher` on every length from 0 to 64 bytes.
//!
//! The 64-bit hash is split: the high bits choose the key's home slot and the low 54 bits are
//! the fingerprint stored in the index (see `table.rs`).

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// The last `len % 8` bytes of a message (fewer than 8) as a little-endian word.
#[inline(always)]
fn tail_word(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        // Two overlapping 4-byte reads; the overlap holds the same bytes in both.
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]) as u64;
        lo | hi << (8 * (n - 4))
    } else if n > 0 {
        b[0] as u64 | (b[n / 2] as u64) << (8 * (n / 2)) | (b[n - 1] as u64) << (8 * (n - 1))
    } else {
        0
    }
}

/// Hash `key` with the table's secret: SipHash-1-3, 64-bit output.
#[inline]
pub(crate) fn hash_key(secret: [u64; 2], key: &[u8]) -> u64 {
    let [k0, k1] = secret;
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let m = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        v[3] ^= m;
        sip_round(&mut v);
        v[0] ^= m;
    }
    let b = (key.len() as u64) << 56 | tail_word(words.remainder());
    v[3] ^= b;
    sip_round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A fresh random secret for a new table.
pub(crate) fn random_secret() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: fall back to std's randomly seeded hasher mixed with the time and
        // the address of a stack value. Weaker, but still unpredictable from outside.
        use std::hash::{BuildHasher, Hash, Hasher};
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

    /// The one-shot SipHash-1-3 equals the `siphasher` crate's on every length that
    /// exercises a different split into words and tail, under several secrets.
    #[test]
    fn equals_the_siphasher_crate() {
        use siphasher::sip::SipHasher13;
        use std::hash::Hasher;
        let bytes: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        for secret in [[0, 0], [1, 2], [u64::MAX, 0x0123_4567_89ab_cdef]] {
            for len in 0..=64 {
                let mut h = SipHasher13::new_with_keys(secret[0], secret[1]);
                h.write(&bytes[..len]);
                assert_eq!(hash_key(secret, &bytes[..len]), h.finish(), "len {len}");
            }
        }
    }
}
