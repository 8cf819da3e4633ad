//! What the process asks of glibc's allocator: few arenas, and free memory handed back
//! once a wave of sessions is gone. Both are foreign calls without a safe binding, hence
//! this module's `unsafe`; elsewhere than on glibc both do nothing.
//!
//! # Why
//!
//! glibc gives each thread that meets a locked arena an arena of its own, up to eight per
//! core, and a freed block goes back to the arena it came from. The speaker's tasks move
//! between tokio's workers, so a session's buffers are spread over several arenas, each
//! with free holes between the blocks that live on; `malloc_trim` can hand back only whole
//! free pages. Measured (`bounded_interop`'s silent connections: 10,000 connections at
//! once that never send a byte, closed after the hold time, twice; anonymous resident
//! memory from 2.2 MB at the start): with glibc's default arenas 11.8 MB after the first
//! wave and 23.9 MB after the second, the same peak each time and 5 MB of it live
//! (heaptrack); with one arena 7.2 MB and 9.4 MB. The million-route table peaked at
//! 133.7 MiB with one arena against 134.5 MiB without (`docs/benchmarks.md`, 2026-12-06c).

#![allow(unsafe_code)]

/// Arenas the allocator may create: one per tokio worker of a 2-core machine, so that the
/// two never wait on each other's lock, and not one per thread that ever allocated.
pub const ARENAS: i32 = 2;

/// Caps glibc's arenas at [`ARENAS`], unless the operator chose otherwise
/// (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`). Call first
/// thing in `main`, before any thread starts: arenas made before stay.
pub fn limit_arenas() {
    let chosen = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if chosen {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only sets a limit inside glibc's allocator,
    // under its own lock; it has no precondition.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Hands the allocator's free memory back to the system (glibc's `malloc_trim(0)`): after
/// a wave of dynamic neighbours that left, their freed buffers would stay with the process
/// otherwise. Measured: 10,000 connections that came and went left the daemon at 90 MB
/// resident from a 17 MB start; trimmed after they were gone, it went back near the start.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions: it walks glibc's own arenas under their
    // locks and only releases pages that hold no allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
