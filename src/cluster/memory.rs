//! Gives the heap memory a replica freed back to the operating system.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse, so a burst (thousands of watches opening at
//! once, a large list, a snapshot install) would keep the replica's resident memory at its peak for the rest
//! of the process's life. A thread asks the allocator every `MALLOC_TRIM_INTERVAL_MS` to return the free
//! memory at the top of its heaps and the free pages inside them (`malloc_trim`). It holds no lock of ours
//! and does nothing on other C libraries.
//!
//! Large buffers (a value of up to 1.5 MiB, a snapshot chunk, an install batch) are mapped from the operating
//! system and unmapped when freed: glibc would otherwise raise its mapping threshold after the first such free
//! and serve the next ones from its per-thread arenas, where they scatter over many threads' heaps (a snapshot
//! install then peaked 30 MiB higher).

use std::time::Duration;

use crate::limits;

/// Starts the trimming thread; it runs until the process exits. Also fixes the size from which allocations are
/// mapped (`MALLOC_MMAP_THRESHOLD_BYTES`).
pub fn start_trimming() -> std::io::Result<()> {
    map_large_allocations();
    std::thread::Builder::new().name("malloc-trim".into()).spawn(|| loop {
        std::thread::sleep(Duration::from_millis(limits::MALLOC_TRIM_INTERVAL_MS));
        trim();
    })?;
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own arenas, under their locks; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn map_large_allocations() {
    // SAFETY: mallopt sets an allocator parameter under the allocator's lock; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, limits::MALLOC_MMAP_THRESHOLD_BYTES as libc::c_int);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn map_large_allocations() {}
