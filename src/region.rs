//! The memory a table lives in: one contiguous run of 64-bit words, zero when created.
//!
//! Every field of the table — header, statistics, index and slots — is an `AtomicU64` at a
//! fixed word offset (see `layout.rs` and ARCHITECTURE.md), so the region holds no pointers
//! and can live in private memory or in a `MAP_SHARED` mapping of a file, which every process
//! that maps the file shares (`file.rs` makes and checks such files). Under loom the region is
//! a vector of loom atomics instead, so the same protocol code is modelled.

use crate::sync::AtomicU64;

pub(crate) struct Region {
    #[cfg(not(loom))]
    ptr: std::ptr::NonNull<AtomicU64>,
    #[cfg(loom)]
    words: Vec<AtomicU64>,
    #[cfg(not(loom))]
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
        Region::map(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        )
    }

    /// The first `len` words of the open file `fd`, mapped `MAP_SHARED`: every process that
    /// maps the file sees the same words. The file must be at least `len * 8` bytes long.
    #[cfg(not(loom))]
    pub(crate) fn shared(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> std::io::Result<Region> {
        use std::os::fd::AsRawFd;
        Region::map(len, libc::MAP_SHARED, fd.as_raw_fd())
    }

    #[cfg(not(loom))]
    fn map(len: usize, flags: libc::c_int, fd: libc::c_int) -> std::io::Result<Region> {
        let bytes = len
            .checked_mul(8)
            .ok_or_else(|| std::io::Error::other("table size overflows"))?;
        // SAFETY: a fresh mapping of our own (anonymous, or of a file the caller opened read-
        // write); the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes.max(8),
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
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
