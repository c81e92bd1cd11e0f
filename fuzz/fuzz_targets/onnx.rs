//! ONNX files: the bytes as a `.onnx` model, read and imported into a graph (decoding, constant
//! folding, patterns, op mapping, shapes); opening gives a model or an error.
#![no_main]

use candle_core::Device;
use convscope::model::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("fuzz.onnx");
    std::fs::write(&path, data).unwrap();
    let _ = Model::open(&path, None, &Device::Cpu);
});
