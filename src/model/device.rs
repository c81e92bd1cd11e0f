//! `--device` strings to candle devices.

use anyhow::{bail, Result};
use candle_core::Device;

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => match rest.strip_prefix(':').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => bail!("unknown device '{spec}': use cpu, cuda or cuda:N"),
        },
        None => bail!("unknown device '{spec}': use cpu, cuda or cuda:N"),
    };
    cuda_device(ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        anyhow::anyhow!(
            "cannot use CUDA device {ordinal} ({}); check nvidia-smi, or use --device cpu",
            super::load::first_line(&e.to_string())
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<Device> {
    bail!("this convscope was built without CUDA; rebuild with `cargo build --release --features cuda`, or use --device cpu")
}

/// `cpu` or `cuda:N`, for status lines.
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// `message`, with a hint added when it reports the GPU out of memory (candle passes CUDA's
/// `CUDA_ERROR_OUT_OF_MEMORY` through as an error, never a crash).
pub fn with_memory_hint(message: String) -> String {
    if message.contains("OUT_OF_MEMORY") || message.to_ascii_lowercase().contains("out of memory") {
        format!(
            "{message} (the GPU is out of memory: try a smaller input size (--size), filter \
             patterns with fewer channels at once (--budget, which only filter patterns take), \
             or --device cpu)"
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::with_memory_hint;

    #[test]
    fn out_of_memory_gets_a_hint() {
        let oom = "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".to_string();
        let hint = with_memory_hint(oom);
        assert!(hint.contains("--device cpu"), "{hint}");
        // --budget bounds filter patterns only (Score-CAM's masked passes have their own).
        assert!(
            hint.contains("--budget, which only filter patterns take"),
            "{hint}"
        );
        assert_eq!(with_memory_hint("no such layer".into()), "no such layer");
    }
}
