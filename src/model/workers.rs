//! CPU passes run on the thread pool's workers. Every CPU kernel splits its work over rayon's
//! pool; called from a thread outside the pool, each kernel call hands its jobs to the workers
//! and sleeps until they are done, so every layer pays a round of wake-ups (on the 2-core
//! development machine, ~20 µs per layer: 7% of a 1x1 convolution of one 28x28 image). A pass
//! that moves onto a worker once pays that once: the layers' jobs are then split between
//! workers that are already awake (measured, forward passes of one image on 2 threads:
//! ResNet50 0.91x the time, MobileNetV3-large 0.76x, EfficientNet-B0 0.85x, VGG16 0.99x).

use candle_core::Device;

/// `pass` over tensors on `device`: on the CPU, run on one of the global pool's workers (where
/// it is already on one: in place); elsewhere on this thread, which only queues the device's
/// kernels.
pub fn on_workers<R: Send>(device: &Device, pass: impl FnOnce() -> R + Send) -> R {
    if device.is_cpu() {
        rayon::scope(|_| pass())
    } else {
        pass()
    }
}
