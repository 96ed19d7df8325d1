//! The memory a table lives in: one contiguous run of 64-bit words, zero when created.
//!
//! Every field of the table — header, statistics, index and slots — is an `AtomicU64` at a
//! fixed word offset (see `layout.rs` and ARCHITECTURE.md), so the region holds no pointers
//! and can live in anonymous memory (shared with the children a process forks) or in a
//! `MAP_SHARED` mapping of a file, which every process that maps the file shares (`file.rs`
//! makes and checks such files). Under loom the region is
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
    /// A zeroed region of `len` words in no file. Anonymous memory is lazily backed (and
    /// `MAP_NORESERVE`), so untouched slots cost no resident memory.
    ///
    /// It is mapped `MAP_SHARED`, not `MAP_PRIVATE`: a process that opens a table and then
    /// forks (a server's master and its workers) leaves one table shared by all of them, as a
    /// file would be, where a private mapping would give each child its own copy on its first
    /// write and make every limit silently per-process. Such memory is shmem to the kernel, so
    /// transparent huge pages for it follow `shmem_enabled`, not `enabled` (see
    /// [`Region::advise_huge_pages`]).
    #[cfg(not(loom))]
    pub(crate) fn private(len: usize) -> std::io::Result<Region> {
        Region::map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        )
    }

    /// The first `len` words of the open file `fd`, mapped `MAP_SHARED`: every process that
    /// maps the file sees the same words. The file must be at least `len * 8` bytes long.
    /// `writable` false maps it `PROT_READ` only (for a file opened read-only): any store to
    /// it would fault, so the caller must make none.
    #[cfg(not(loom))]
    pub(crate) fn shared(
        fd: std::os::fd::BorrowedFd<'_>,
        len: usize,
        writable: bool,
    ) -> std::io::Result<Region> {
        use std::os::fd::AsRawFd;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        Region::map(len, prot, libc::MAP_SHARED, fd.as_raw_fd())
    }

    #[cfg(not(loom))]
    fn map(
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        fd: libc::c_int,
    ) -> std::io::Result<Region> {
        let bytes = len
            .checked_mul(8)
            .ok_or_else(|| std::io::Error::other("table size overflows"))?;
        // SAFETY: a fresh mapping of our own (anonymous, or of a file the caller opened with
        // the access `prot` asks for); the result is checked before use.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), bytes.max(8), prot, flags, fd, 0) };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Region {
            ptr: std::ptr::NonNull::new(p as *mut AtomicU64).expect("mmap returned NULL"),
            len,
        })
    }

    /// Ask the kernel to back the region with transparent huge pages (`MADV_HUGEPAGE`): one
    /// TLB entry per 2 MiB instead of per 4 KiB, which random keys over a large table miss
    /// constantly. Resident memory then grows in 2 MiB steps rather than page by page, so it
    /// is an opt-in. Advice only: `Err` says the kernel declined (no THP support). Every
    /// region is shared memory (an anonymous shared mapping, or a file), so the kernel's shmem
    /// setting (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`, or tmpfs `huge=` for a
    /// file) decides whether huge pages are actually used: `advise`, `within_size` or `always`
    /// honour the advice; `never` (a common default) ignores it, though the mapping is marked.
    #[cfg(not(loom))]
    pub(crate) fn advise_huge_pages(&self) -> std::io::Result<()> {
        // SAFETY: advice on exactly the range this region mapped; it changes no contents.
        let r = unsafe {
            libc::madvise(
                self.ptr.as_ptr() as *mut libc::c_void,
                (self.len * 8).max(8),
                libc::MADV_HUGEPAGE,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    #[cfg(loom)]
    pub(crate) fn advise_huge_pages(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// The address range of the mapping (for tests that read `/proc/self/smaps`).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn address_range(&self) -> std::ops::Range<usize> {
        let start = self.ptr.as_ptr() as usize;
        start..start + (self.len * 8).max(8)
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
            // SAFETY: `ptr` points to `len` words mapped for the region's lifetime (read-write,
            // or read-only for a file attached read-only, where the caller only loads), and
            // AtomicU64 has the layout of u64 with every bit pattern valid.
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
        // SAFETY: unmapping the mapping made in `map`, with the same length.
        unsafe {
            libc::munmap(
                self.ptr.as_ptr() as *mut libc::c_void,
                (self.len * 8).max(8),
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use super::Region;

    /// The kernel's flags of the mapping that holds address `at`, from `/proc/self/smaps`
    /// (the kernel may have merged our mapping with a neighbour of the same flags).
    pub(crate) fn vm_flags(at: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let range = line.split_whitespace().next().unwrap_or("");
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            if (a..b).contains(&at) {
                for l in lines.by_ref() {
                    if let Some(flags) = l.strip_prefix("VmFlags:") {
                        return flags.to_owned();
                    }
                }
            }
        }
        panic!("no mapping holds {at:#x} in /proc/self/smaps");
    }

    #[test]
    fn huge_page_advice_marks_the_mapping() {
        let region = Region::private(1 << 20).unwrap(); // 8 MiB
        let start = region.address_range().start;
        assert!(!vm_flags(start).contains(" hg"), "advised before asking");
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        match region.advise_huge_pages() {
            Ok(()) => assert!(vm_flags(start).contains(" hg"), "{}", vm_flags(start)),
            // A kernel without transparent huge pages declines; one with them must not.
            Err(e) => assert!(!thp, "MADV_HUGEPAGE refused with THP present: {e}"),
        }
    }
}
