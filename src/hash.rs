//! The keyed hash of keys.
//!
//! SipHash-1-3 keyed with the table's 128-bit random secret. SipHash is a keyed PRF designed
//! against hash flooding (HashDoS), and its output is fixed by its specification: the same key
//! and secret give the same 64 bits in every build, on every CPU and in every later version of
//! sluice, which a table shared through a file needs (ahash, foldhash and gxhash change output
//! across versions or CPU features: only a private table may use ahash, see [`KeyHasher`]).
//!
//! It is written out here as a one-shot function over the key's bytes: whole words, then the
//! tail in at most two reads. The `siphasher` crate's one-shot `SipHasher13::hash` computes
//! the same function and ties with it in a loop of hashes alone (133 against 134 instructions
//! per 7–15-byte key, 211 against 208 per 40-byte key), but inside a check it costs about 20
//! instructions more (486 against 505 per hot-key `check_at`, 378 against 398 per
//! `allow_at`): the crate's hasher is built in the caller and passed by reference to a call
//! that is not inlined, and its tail is loaded in up to three reads. The counts are callgrind's,
//! from `examples/profile.rs` (`hot`, `allow`, `hash-*`). The tests pin the output and check
//! it against a plain implementation of the specification (itself checked on the SipHash
//! paper's published vector) and against the crate, on every length from 0 to 64 bytes.
//!
//! The 64-bit hash is split: the high bits choose the key's home slot and the low 54 bits are
//! the fingerprint stored in the index (see `table/`).

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

/// How a table hashes its keys, chosen once when the table is opened.
///
/// A table in a file is read by other processes, other builds and later versions, so its keys
/// are hashed with SipHash-1-3 ([`hash_key`]), whose output is fixed by its specification. A
/// private table (anonymous memory, shared only with the processes forked from its opener)
/// is only ever read by the same binary, so it may use ahash, whose output is allowed to
/// change between versions and CPU features of a build but not within one. It takes 3.1 to
/// 3.3 times fewer instructions per key (40 against 133 for 7–15-byte keys, 68 against 211
/// for 40-byte keys), about 100 fewer per check (a hot-key `check_at` 393 against 494, a
/// 100,000-key random `check_at` 388 against 508; callgrind, `examples/profile.rs`).
///
/// The ahash keys are derived from the table's own random secret (stored in its header,
/// inherited with the mapping across `fork`), by `ahash::RandomState::with_seeds`, which is a
/// pure function of its arguments. Never `RandomState::new()` or `default()`: those draw
/// per-process seeds on first use, so a child that hashed first after `fork` would get other
/// hashes than its parent for the same keys in the same table.
#[derive(Clone, Debug)]
pub(crate) enum KeyHasher {
    /// SipHash-1-3 keyed with the table secret: for tables in files.
    Stable([u64; 2]),
    /// ahash keyed from the table secret: for private tables only.
    Private(ahash::RandomState),
}

impl KeyHasher {
    /// The hasher of a table with `secret`: [`KeyHasher::Private`] if the table lives in
    /// private memory, else [`KeyHasher::Stable`].
    pub(crate) fn for_table(secret: [u64; 2], private: bool) -> KeyHasher {
        if !private {
            return KeyHasher::Stable(secret);
        }
        let [k0, k1] = secret;
        // Four seeds from two words: each pair is also rotated and offset so that no seed is
        // zero or equal to another for a zero secret.
        KeyHasher::Private(ahash::RandomState::with_seeds(
            k0,
            k1,
            k0.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15,
            k1.rotate_left(32) ^ 0xc2b2_ae3d_27d4_eb4f,
        ))
    }

    /// The 64-bit hash of `key`.
    #[inline(always)]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        match self {
            KeyHasher::Stable(secret) => hash_key(*secret, key),
            KeyHasher::Private(state) => {
                let mut h = state.build_hasher();
                h.write(key);
                h.finish()
            }
        }
    }
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

    /// SipHash-c-d as the specification states it: the message padded with zeros to one byte
    /// short of a multiple of 8, then its length mod 256; each 8-byte word is xored into v3,
    /// takes `c` rounds and is xored into v0; then 0xff into v2 and `d` rounds.
    fn reference(c: usize, d: usize, k0: u64, k1: u64, msg: &[u8]) -> u64 {
        fn round(v: &mut [u64; 4]) {
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
        let mut v = [
            k0 ^ 0x736f_6d65_7073_6575,
            k1 ^ 0x646f_7261_6e64_6f6d,
            k0 ^ 0x6c79_6765_6e65_7261,
            k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut padded = msg.to_vec();
        while padded.len() % 8 != 7 {
            padded.push(0);
        }
        padded.push(msg.len() as u8);
        for word in padded.chunks(8) {
            let m = u64::from_le_bytes(word.try_into().unwrap());
            v[3] ^= m;
            (0..c).for_each(|_| round(&mut v));
            v[0] ^= m;
        }
        v[2] ^= 0xff;
        (0..d).for_each(|_| round(&mut v));
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    #[test]
    fn reference_gives_the_papers_siphash_2_4_vector() {
        // The SipHash paper, appendix A: key 00 01 .. 0f, message 00 01 .. 0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(reference(2, 4, k0, k1, &msg), 0xa129_ca61_49be_45e5);
    }

    /// Pinned values, computed by an implementation outside this crate: if one changes, every
    /// table file on disk would be read wrong.
    #[test]
    fn hash_is_stable_across_builds() {
        let s = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        for (secret, key, want) in [
            ([0, 0], &b""[..], 0xd1fb_a762_150c_532c),
            ([1, 2], b"198.51.100.7", 0xba77_7977_baf8_1d42),
            ([1, 2], b"10.0.0.1", 0x2a12_70a3_17f6_24c5),
            ([1, 2], b"255.255.255.255", 0x409f_aae5_bd88_a13e),
            (s, b"198.51.100.7", 0x639b_b885_4a6a_3e7a),
            (
                s,
                b"sk_live_0123456789abcdef0123456789abcdef",
                0xafdb_530c_cc8e_390b,
            ),
        ] {
            assert_eq!(
                hash_key(secret, key),
                want,
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
        assert_ne!(hash_key([1, 2], b"a"), hash_key([1, 3], b"a"));
    }

    /// The table's hash is SipHash-1-3 as specified, on every length that splits differently
    /// into words and tail, under several secrets.
    #[test]
    fn equals_the_specification() {
        let bytes: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        for [k0, k1] in [[0, 0], [1, 2], [u64::MAX, 0x0123_4567_89ab_cdef]] {
            for len in 0..=64 {
                let want = reference(1, 3, k0, k1, &bytes[..len]);
                assert_eq!(hash_key([k0, k1], &bytes[..len]), want, "len {len}");
            }
        }
    }

    /// And it equals the `siphasher` crate's SipHash-1-3, an implementation outside this
    /// crate, on the same lengths and secrets.
    #[test]
    fn equals_the_siphasher_crate() {
        use siphasher::sip::SipHasher13;
        let bytes: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        for [k0, k1] in [[0, 0], [1, 2], [u64::MAX, 0x0123_4567_89ab_cdef]] {
            let crate_hash = SipHasher13::new_with_keys(k0, k1);
            for len in 0..=64 {
                let want = crate_hash.hash(&bytes[..len]);
                assert_eq!(hash_key([k0, k1], &bytes[..len]), want, "len {len}");
            }
        }
    }

    #[test]
    fn a_stable_key_hasher_is_the_table_hash() {
        let h = KeyHasher::for_table([1, 2], false);
        assert!(matches!(h, KeyHasher::Stable(_)));
        assert_eq!(h.hash(b"198.51.100.7"), 0xba77_7977_baf8_1d42);
    }

    /// A private hasher is a function of the table secret alone: built twice (as a parent
    /// and a forked child each would) it hashes alike; another secret hashes otherwise.
    #[test]
    fn a_private_key_hasher_depends_on_the_secret_alone() {
        let keys: [&[u8]; 4] = [b"10.0.0.1", b"198.51.100.7", b"255.255.255.255", &[7; 40]];
        for secret in [[0, 0], [1, 2], [u64::MAX, 0x0123_4567_89ab_cdef]] {
            let (a, b) = (
                KeyHasher::for_table(secret, true),
                KeyHasher::for_table(secret, true),
            );
            assert!(matches!(a, KeyHasher::Private(_)));
            let other = KeyHasher::for_table([secret[0] ^ 1, secret[1]], true);
            for key in keys {
                assert_eq!(a.hash(key), b.hash(key));
                assert_ne!(a.hash(key), other.hash(key));
                assert_ne!(a.hash(key), hash_key(secret, key));
            }
        }
    }
}
