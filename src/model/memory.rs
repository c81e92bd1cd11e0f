//! What a request will hold in memory, checked against what is available before anything is
//! allocated, so that an oversized one is refused with one line instead of aborting in the
//! allocator.

use anyhow::{bail, Result};

/// Memory the system can give without swapping (Linux's `MemAvailable`), when known.
pub fn available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses `need` bytes for `what` when they are more than is available.
pub fn ensure_fits(need: u64, what: impl FnOnce() -> String) -> Result<()> {
    match available() {
        Some(free) if need > free => bail!(
            "{} needs about {:.1} GiB, more than the {:.1} GiB of memory available",
            what(),
            gib(need),
            gib(free)
        ),
        _ => Ok(()),
    }
}

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}
