//! Allocator settings for the process that merges.
//!
//! glibc hands a freed block back to the kernel when it was larger than the mmap threshold
//! (which glibc raises to at most 32 MiB as it sees such blocks) or when the free memory at
//! the top of the heap passes the trim threshold (twice the mmap threshold). A merge
//! allocates its per-tensor buffers (magnitudes, masks, blocks of every input) again for
//! every tensor, so under the defaults each of them comes back as fresh pages that the
//! kernel zeroes and maps one page fault at a time: a quarter of TIES' CPU time on the
//! 0.5B-shaped bench (`tools/bench/README.md`). [`keep_freed_memory`] fixes the mmap
//! threshold at its 32 MiB maximum and raises the trim threshold to 2 GiB, so freed blocks
//! up to 32 MiB are reused from the heap. Only blocks that are free are kept: the peak
//! resident set is what the merge's largest moment needs, as before (measured equal).
//! Larger blocks (a whole embedding's magnitudes) are still mapped and unmapped each time.

/// Keep freed heap memory for reuse (glibc only; a no-op elsewhere). Call once, early.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes two allocator parameters; it is called before any
    // other thread exists and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
