//! Checkpoint files: the bytes as a file (safetensors, zip .pth or anything), and the bytes as
//! the pickle inside a PyTorch zip archive; loading gives tensors or an error.
#![no_main]

use std::io::Write;

use candle_core::Device;
use convscope::model::StateDict;
use libfuzzer_sys::fuzz_target;

fn pth_around(pickle: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/data/0", opts).unwrap();
    zip.write_all(&[0u8; 64]).unwrap();
    zip.finish().unwrap();
    buf.into_inner()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        pth_around(rest)
    };
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("fuzz.ckpt");
    std::fs::write(&path, bytes).unwrap();
    let _ = StateDict::load(&path, &Device::Cpu);
});
