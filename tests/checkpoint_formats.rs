//! PyTorch zip checkpoints as `torch.save` writes them (fixtures by
//! scripts/make_checkpoint_fixtures.py): any archive name, and tensors in any storage layout,
//! read to the same values as their contiguous copies.

use std::path::Path;

use candle_core::Device;
use convscope::model::StateDict;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn strided_tensors_under_a_21_character_archive_name_read_as_saved() {
    // The archive's first entry, `strided_checkpoint_21/data.pkl`, is 76 bytes long in the
    // central directory: the zip crate's default offset guess then fails on this file.
    same_tensors("strided_checkpoint_21.pth");
}

#[test]
fn protocol_4_and_5_pickles_read_as_protocol_2() {
    // The same tensors saved with pickle_protocol=4 and 5 (scripts/make_checkpoint_fixtures.py).
    same_tensors("protocol4.pth");
    same_tensors("protocol5.pth");
}

/// The checkpoint `file` holds the tensors of strided_checkpoint_21_expected.safetensors.
fn same_tensors(file: &str) {
    let pth = StateDict::load(&fixture(file), &Device::Cpu).unwrap();
    let expected = StateDict::load(
        &fixture("strided_checkpoint_21_expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(pth.len(), expected.len(), "{file}");
    for name in expected.names() {
        let (a, b) = (pth.get(name).unwrap(), expected.get(name).unwrap());
        assert_eq!(a.dims(), b.dims(), "{file}: {name}");
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(
            a, b,
            "{file}: {name}: values differ from the contiguous copy"
        );
    }
}
