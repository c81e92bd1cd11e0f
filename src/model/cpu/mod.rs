//! The engine's own CPU kernels, for the ops where candle's CPU path is slow: convolution
//! (per channel for depthwise, Winograd for batches through wide 3x3 stride-1 layers, direct
//! with output channels in the vector lanes for the other wide kernels and one image's 1x1s,
//! im2col into `gemm` for the rest; phase planes for strided windows, woven back for
//! gradients), max
//! pooling, ReLU, per-plane maps and reductions (batch norm, gates, global pooling), layer
//! norm and the other activations, forward and backward. Other devices use
//! candle's ops.

pub mod col2im;
pub mod conv;
pub mod depthwise;
pub mod direct;
pub mod elementwise;
pub mod fast_math;
pub mod interleave;
pub mod layer_norm;
pub mod phases;
pub mod planes;
pub mod pool;
pub mod vector_runs;
pub mod winograd;

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, DType, Device, Result, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::ops::geometry::Window;

/// Fewest values an elementwise or per-plane task takes: below this, spreading a pass over
/// rayon's threads costs more (waking them) than it saves.
pub const MIN_TASK_VALUES: usize = 1 << 16;

/// Rows of the multiply's widest register block (`gemm`'s AVX-512 kernel: 64 rows). The
/// kernels cut their work into multiples of it where they can (im2col's pixel tiles, Winograd's
/// blocks of tiles), so that no `gemm` call ends in a narrower kernel.
pub const MULTIPLY_ROWS: usize = 64;

/// Runs a loop compiled for the widest vector instructions this CPU has (AVX-512, or AVX2 with
/// FMA), so that the compiler vectorises it for them. The loop is the body of `kernel`'s
/// `with_simd`, which must be `#[inline(always)]` (as must anything it calls that holds a loop
/// or math worth vectorising): only code inlined into the dispatched function gets its
/// instructions. A closure is not enough, since it cannot be marked so.
#[inline(always)]
pub fn vectorized<K: pulp::WithSimd>(kernel: K) -> K::Output {
    pulp::Arch::new().dispatch(kernel)
}

/// Whether `x` is an `f32` tensor on the CPU, the kernels' one case.
pub fn handles(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// The contiguous `f32` data of a CPU tensor.
pub fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    with_all_data(std::slice::from_ref(t), |data| f(data[0]))
}

/// The contiguous `f32` data of several CPU tensors at once.
pub fn with_all_data<R>(ts: &[Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let ts = ts
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let held: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(held.len());
    for (storage, layout) in &held {
        match &**storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                let start = layout.start_offset();
                slices.push(&v[start..start + layout.shape().elem_count()]);
            }
            _ => bail!("the CPU kernels need f32 tensors on the CPU"),
        }
    }
    f(&slices)
}

/// A convolution as the kernels take it: plain tensors and per-axis geometry.
#[derive(Debug, Clone, Copy)]
pub struct ConvArgs<'a> {
    /// `(out_channels, in_channels / groups, kh, kw)`.
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub window: &'a Window,
    pub groups: usize,
    pub prepared: &'a Prepared,
}

/// What the kernels derive from a convolution's weights once and keep with it, each made on
/// the first call that takes its kernel: Winograd's transformed kernels (4x the weights) and
/// the weights packed for the direct kernel (1x). The clones of a convolution share them,
/// as they share its weights.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    winograd: Arc<OnceLock<Vec<f32>>>,
    packed: Arc<OnceLock<direct::Packed>>,
}

impl Prepared {
    /// Winograd's transformed kernels, made by `make` the first time.
    pub fn winograd(&self, make: impl FnOnce() -> Result<Vec<f32>>) -> Result<&[f32]> {
        made_once(&self.winograd, make).map(|u| u.as_slice())
    }

    /// The packed weights, made by `make` the first time.
    pub fn packed(&self, make: impl FnOnce() -> Result<direct::Packed>) -> Result<&direct::Packed> {
        made_once(&self.packed, make)
    }
}

/// `cell`'s value, made by `make` if it has none (two threads may both make it: the first one
/// kept wins, and both are equal).
fn made_once<T>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = make()?;
    Ok(cell.get_or_init(|| v))
}

/// Lanes of one of `S`'s vectors: 16 with AVX-512, 8 with AVX2.
pub fn lanes<S: pulp::Simd>() -> usize {
    std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>()
}

/// The convolution of `x` (see [`handles`]) by the fastest kernel that computes it, bias
/// included.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    window: &Window,
    groups: usize,
    prepared: &Prepared,
) -> Result<Tensor> {
    let args = ConvArgs {
        weight,
        bias,
        window,
        groups,
        prepared,
    };
    if depthwise::applies(x, &args) {
        depthwise::conv2d(x, &args)
    } else if winograd::applies(x, &args) {
        winograd::conv2d(x, &args)
    } else if direct::applies(x, &args) {
        direct::conv2d(x, &args)
    } else {
        conv::conv2d(x, &args)
    }
}

/// How many pieces to cut each of `blocks` independent blocks (images, groups) into: at least
/// `by_memory`, at least two per thread in all, and a whole number per thread while they are
/// few, so that no thread is left with one piece more than the others.
pub fn pieces_per_block(blocks: usize, by_memory: usize, threads: usize) -> usize {
    let per_block = (2 * threads).div_ceil(blocks).max(by_memory);
    if blocks * per_block < 4 * threads {
        (blocks * per_block).next_multiple_of(threads) / blocks
    } else {
        per_block
    }
}

/// Runs jobs `0..jobs`, each with a scratch value from `scratch` (one per worker). With a job
/// for every thread they run in parallel, each multiply on one thread; with fewer, one after
/// another, each multiply spread over the threads.
pub fn run_jobs<S>(
    jobs: usize,
    scratch: impl Fn() -> S + Sync + Send,
    run: impl Fn(&mut S, usize, Parallelism) + Sync + Send,
) {
    let threads = rayon::current_num_threads();
    if jobs >= threads {
        (0..jobs)
            .into_par_iter()
            .for_each_init(&scratch, |s, job| run(s, job, Parallelism::None));
    } else {
        let mut s = scratch();
        for job in 0..jobs {
            run(&mut s, job, Parallelism::Rayon(threads));
        }
    }
}

thread_local! {
    /// This thread's scratch buffers, kept between calls (see [`Scratch`]).
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Scratch buffers a thread keeps (a kernel's job takes three at most: Winograd's transformed
/// input, its products and its window rows).
const SCRATCH_KEPT: usize = 3;

/// A buffer of `f32`s for values a kernel writes before it reads them, taken from the calling
/// thread's buffers of earlier calls and given back when dropped: the layers and steps of a
/// pass reuse the same pages instead of allocating and zeroing new ones every call. A thread
/// keeps at most [`SCRATCH_KEPT`] buffers, each the size of the largest it was asked for.
pub struct Scratch(Vec<f32>);

impl Scratch {
    /// `len` values, holding whatever the buffer held before.
    pub fn take(len: usize) -> Scratch {
        let mut buf = SCRATCH
            .with(|kept| {
                let mut kept = kept.borrow_mut();
                let largest = (0..kept.len()).max_by_key(|&i| kept[i].capacity())?;
                Some(kept.swap_remove(largest))
            })
            .unwrap_or_default();
        buf.resize(len, 0.0);
        Scratch(buf)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        SCRATCH.with(|kept| {
            let mut kept = kept.borrow_mut();
            if kept.len() < SCRATCH_KEPT {
                kept.push(buf);
            }
        });
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// An output buffer that parallel tasks write through; each task writes its own elements.
#[derive(Clone, Copy)]
pub struct SharedOut(*mut f32, usize);

// SAFETY: tasks never write the same element, and the buffer outlives the parallel loop.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub fn new(buf: &mut [f32]) -> Self {
        Self(buf.as_mut_ptr(), buf.len())
    }

    /// A pointer to element `i`.
    ///
    /// # Safety
    /// No other task writes the elements this pointer is used for.
    pub unsafe fn at(self, i: usize) -> *mut f32 {
        debug_assert!(i < self.1);
        self.0.add(i)
    }
}
