//! Keeping fltd's resident memory small at idle (`Documentation/performance.md`, "API and fltd
//! memory"). Process-wide: runs first thing in `main`, before any thread.
#![allow(unsafe_code)]

/// glibc gives every thread that allocates an arena of its own (up to 8 per core); fltd's ~25
/// mostly idle driver threads allocate little, so two arenas serve them with less memory.
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no allocation is in flight yet.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}
