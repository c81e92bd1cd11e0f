//! glibc's allocator, tuned for passes that allocate and free buffers of tens to hundreds of
//! megabytes many times (a filter-pattern step, a CAM): by default glibc serves each from a
//! fresh `mmap` and gives it back with `munmap`, so every step faults its pages in again (on a
//! 40-step VGG16 run, 12 s of system time in 26 s). Kept in the heap instead, the pages are
//! reused; peak memory is the same.

/// Applies the settings; call once at start-up. Other allocators and platforms: nothing.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Buffers up to 1 GiB from the heap, the heap never trimmed below 2 GiB of free space,
        // and grown 256 MiB at a time; one heap for every thread: passes allocate on the
        // thread pool's workers (see `model::workers`), whose arenas of their own would each
        // keep their freed buffers, and serve those over 64 MiB from fresh `mmap`s (a 64-channel
        // VGG16 filter-pattern run peaked at 788 MiB with them, 710 MiB with one heap).
        // SAFETY: mallopt only sets allocator parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 256 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
