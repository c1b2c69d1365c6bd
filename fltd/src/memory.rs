//! Keeping fltd's resident memory small (`Documentation/performance.md`, "API and fltd memory").
//! Process-wide: runs first thing in `main`, before any thread.
#![allow(unsafe_code)]

/// Allocations at least this big get pages of their own, unmapped when freed.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD_BYTES: nix::libc::c_int = 256 * 1024;

/// glibc tuned for a daemon of ~30 mostly idle threads whose big allocations are transient
/// (etcd answers, registry snapshots being parsed):
/// - one malloc arena: per-thread arenas (up to 8 per core) each keep what their thread once
///   freed; with 10,000 units a second arena held 24 MB of it, nearly all free;
/// - a fixed mmap threshold: glibc raises it (up to 32 MiB) each time a big mmapped block is
///   freed, after which multi-MB answers are carved from the heap and fragment it for good.
pub fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; no allocation is in flight yet.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}
