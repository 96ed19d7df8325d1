//! The memory a table lives in: one contiguous run of 64-bit words, zero when created.
//!
//! Every field of the table — header, statistics, index and slots — is an `AtomicU64` at a
//! fixed word offset (see `layout.rs` and ARCHITECTURE.md), so the region holds no pointers
//! and can be placed in private memory now and in a `MAP_SHARED` file mapping later. Under
//! loom the region is a vector of loom atomics instead, so the same protocol code is modelled.

use crate::sync::AtomicU64;

pub(crate) struct Region {
    #[cfg(not(loom))]
    ptr: std::ptr::NonNull<AtomicU64>,
    #[cfg(loom)]
    words: Vec<AtomicU64>,
    len: usize,
}

// SAFETY: the region is only ever accessed through atomics.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    /// A private, zeroed region of `len` words. Anonymous `mmap` memory is lazily backed, so
    /// untouched slots cost no resident memory.
    #[cfg(not(loom))]
    pub(crate) fn private(len: usize) -> std::io::Result<Region> {
        let bytes = len
            .checked_mul(8)
            .ok_or_else(|| std::io::Error::other("table size overflows"))?;
        // SAFETY: a fresh anonymous mapping; we check the result before using it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes.max(8),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Region {
            ptr: std::ptr::NonNull::new(p as *mut AtomicU64).expect("mmap returned NULL"),
            len,
        })
    }

    #[cfg(loom)]
    pub(crate) fn private(len: usize) -> std::io::Result<Region> {
        Ok(Region {
            words: (0..len).map(|_| AtomicU64::new(0)).collect(),
            len,
        })
    }

    #[inline]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        #[cfg(not(loom))]
        {
            // SAFETY: `ptr` points to `len` words mapped read-write for the region's lifetime,
            // and AtomicU64 has the layout of u64 with every bit pattern valid.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }
        #[cfg(loom)]
        {
            &self.words
        }
    }
}

#[cfg(not(loom))]
impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `private`, with the same length.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr() as *mut libc::c_void,
                (self.len * 8).max(8),
            );
        }
    }
}
