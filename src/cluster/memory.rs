//! Gives the heap memory a replica freed back to the operating system.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse, so a burst (thousands of watches opening at
//! once, a large list, a snapshot install) would keep the replica's resident memory at its peak for the rest
//! of the process's life. A thread asks the allocator every `MALLOC_TRIM_INTERVAL_MS` to return the free
//! memory at the top of its heaps and the free pages inside them (`malloc_trim`). It holds no lock of ours
//! and does nothing on other C libraries.

use std::time::Duration;

use crate::limits;

/// Starts the trimming thread; it runs until the process exits.
pub fn start_trimming() -> std::io::Result<()> {
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
