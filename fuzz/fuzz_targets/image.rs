//! Image files through the loader with its decode limits (here 2048 px a side, 64 MiB).
#![no_main]

use convscope::input::{load_image, ImageLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("fuzz.img");
    std::fs::write(&path, data).unwrap();
    let limits = ImageLimits {
        max_side: 2048,
        max_mebibytes: 64,
    };
    let _ = load_image(&path, limits);
});
