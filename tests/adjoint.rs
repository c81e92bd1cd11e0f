//! Linear ops' hand-written gradients are their exact adjoints: <f(x), g> == <x, f^T(g)>.
//! Covers shapes the PyTorch fixtures do not: dilation, depthwise groups, strides that leave a
//! remainder, non-square inputs, average pooling with ceil_mode, and per-axis geometry (1x7
//! kernels, padding one wider on one side, different strides along height and width), and the
//! channel ops of the newer families: layer scale, channel shuffle and slices, and the squeeze-and-excitation
//! gate (bilinear: the adjoint holds in each input with the other fixed).

mod common;

use candle_core::{Device, Tensor};
use convscope::model::ops::geometry::{Axis, Window};
use convscope::model::ops::{
    AdaptiveAvgPool, Backward, ChannelScale, ChannelShuffle, ChannelSlice, Conv2d,
    FlattenChannelsLast, Gate, GlobalMaxPool, LeakyRelu, Op, Pool, PoolKind,
};

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic values without a global RNG.
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i as u64 + 1) * (seed * 2 + 7919) % 10007) as f32 / 10007.0) - 0.5)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn assert_adjoint(what: &str, lhs: f64, rhs: f64) {
    let rel = (lhs - rhs).abs() / lhs.abs().max(rhs.abs()).max(1e-9);
    assert!(rel < 1e-4, "{what}: <f(x),g> = {lhs}, <x,f'(g)> = {rhs}");
}

/// `op` of one input, its values flattened.
fn values(op: &Op, x: &Tensor) -> Vec<f32> {
    op.forward(&[x])
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Checks `<op(x), g> == <x, vjp(g)>` for a random `x` of `shape`.
fn check_adjoint(what: &str, op: &Op, shape: &[usize], seed: u64) {
    let x = randn(shape, seed);
    let y = op.forward(&[&x]).unwrap();
    let gy = randn(y.dims(), seed + 1000);
    let at = Backward {
        inputs: vec![Some(&x)],
        output: Some(&y),
        input_shapes: vec![x.dims().to_vec()],
    };
    let gx = op.vjp(&at, &gy).unwrap().remove(0);
    assert_eq!(gx.dims(), x.dims(), "{what}");
    assert_adjoint(what, dot(&y, &gy), dot(&x, &gx));
}

/// (batch, in, out, h, w, kernel, stride, padding, dilation, groups)
type ConvCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

fn convolution_cases() -> Vec<ConvCase> {
    vec![
        (1, 3, 5, 9, 13, 3, 1, 1, 1, 1),
        (2, 4, 6, 17, 11, 3, 2, 1, 1, 1),
        (1, 3, 4, 20, 15, 7, 2, 3, 1, 1),
        (1, 4, 4, 10, 10, 1, 2, 0, 1, 1),
        (1, 6, 6, 12, 9, 3, 1, 2, 2, 1),
        (1, 8, 8, 11, 14, 3, 1, 1, 1, 8),
        (2, 6, 9, 13, 16, 3, 3, 1, 1, 3),
        (1, 2, 3, 8, 8, 3, 1, 0, 1, 1),
        // The strided gradient's phases: taps of one phase only (stride 2, dilation 2), one tap
        // per phase (stride 3, dilation 2), a phase no tap reaches (kernel 2, stride 3; 1x1
        // stride 2 with padding), input rows no window reads, a depthwise 5x5 stride 2.
        (1, 3, 4, 11, 12, 3, 2, 1, 2, 1),
        (1, 3, 4, 14, 13, 3, 3, 2, 2, 1),
        (2, 4, 3, 10, 9, 2, 3, 1, 1, 1),
        (1, 4, 4, 9, 9, 1, 2, 1, 1, 1),
        (1, 4, 4, 10, 11, 3, 2, 0, 1, 1),
        (2, 6, 6, 15, 14, 5, 2, 2, 1, 6),
    ]
}

#[test]
fn convolution_input_gradient_is_the_adjoint() {
    for (i, (n, ci, co, h, w, k, s, p, d, g)) in convolution_cases().into_iter().enumerate() {
        let weight = randn(&[co, ci / g, k, k], i as u64 + 1);
        let conv = Conv2d::square(weight, None, s, p, d, g).unwrap();
        check_adjoint(
            &format!("conv case {i}"),
            &Op::Conv2d(conv),
            &[n, ci, h, w],
            100 + i as u64,
        );
    }
}

#[test]
fn convolution_input_gradient_is_the_same_through_candles_ops() {
    // f64 tensors take candle's ops (the path of other devices: the phases stacked and permuted
    // into place), f32 ones the engine's kernels (the phases woven by the CPU kernel).
    for (i, (n, ci, co, h, w, k, s, p, d, g)) in convolution_cases().into_iter().enumerate() {
        let weight = randn(&[co, ci / g, k, k], i as u64 + 1);
        let f64_of = |t: &Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
        let conv = Conv2d::square(weight.clone(), None, s, p, d, g).unwrap();
        let conv64 = Conv2d::square(f64_of(&weight), None, s, p, d, g).unwrap();
        let x = randn(&[n, ci, h, w], 200 + i as u64);
        let gy = randn(conv.apply(&x).unwrap().dims(), 300 + i as u64);
        let ours = conv.input_grad(&gy, (h, w)).unwrap();
        let candles = conv64.input_grad(&f64_of(&gy), (h, w)).unwrap();
        assert_eq!(candles.dtype(), candle_core::DType::F64);
        let candles = candles.to_dtype(candle_core::DType::F32).unwrap();
        common::assert_close(&format!("conv case {i}"), &ours, &candles, 1e-5);
    }
}

#[test]
fn per_axis_convolution_gradient_is_the_adjoint() {
    for (i, (kh, kw, window)) in common::per_axis_windows().into_iter().enumerate() {
        let conv = Conv2d::new(randn(&[5, 3, kh, kw], 40 + i as u64), None, window, 1);
        let what = format!("per-axis conv case {i}");
        check_adjoint(&what, &Op::Conv2d(conv), &[2, 3, 12, 10], 60 + i as u64);
    }
}

#[test]
fn average_pooling_gradient_is_the_adjoint() {
    for (i, &(k, s, p, ceil, h, w)) in [
        (2, 2, 0, false, 8, 8),
        (3, 2, 1, false, 9, 12),
        (3, 2, 1, true, 10, 7),
        (2, 3, 0, true, 11, 11),
    ]
    .iter()
    .enumerate()
    {
        let pool = Pool::square(PoolKind::Avg, k, s, p, ceil);
        check_adjoint(
            &format!("avg pool case {i}"),
            &Op::Pool(pool),
            &[2, 3, h, w],
            i as u64,
        );
    }
    // A non-square window with different strides.
    let pool = Pool {
        kind: PoolKind::Avg,
        window: Window {
            h: Axis::new(3, 2, 1),
            w: Axis::new(2, 1, 0),
        },
        ceil_mode: false,
    };
    check_adjoint("non-square avg pool", &Op::Pool(pool), &[1, 2, 9, 7], 77);
    let excluding = Pool {
        kind: PoolKind::AvgExcludingPadding,
        ..pool
    };
    check_adjoint(
        "avg pool, padding not counted",
        &Op::Pool(excluding),
        &[1, 2, 9, 7],
        78,
    );
}

#[test]
fn adaptive_pooling_gradient_is_the_adjoint() {
    for (i, &(h, w, oh, ow)) in [(2, 3, 7, 7), (14, 14, 7, 7), (10, 13, 3, 4), (5, 5, 1, 1)]
        .iter()
        .enumerate()
    {
        let op = Op::AdaptiveAvgPool(AdaptiveAvgPool {
            out_h: oh,
            out_w: ow,
        });
        assert_eq!(op.output_shape(&[&[1, 2, h, w]]), Ok(vec![1, 2, oh, ow]));
        check_adjoint(&format!("adaptive case {i}"), &op, &[1, 2, h, w], i as u64);
    }
}

#[test]
fn ceil_mode_output_sizes_follow_pytorch() {
    // torch.nn.MaxPool2d(3, 2, ceil_mode=True) on 10 gives 5; on 9 gives 4; with padding 1 on 8: 5.
    let out = |k, s, p, c, size| {
        Pool::square(PoolKind::Max, k, s, p, c)
            .output((size, size))
            .map(|(h, _)| h)
    };
    assert_eq!(out(3, 2, 0, true, 10), Ok(5));
    assert_eq!(out(3, 2, 0, true, 9), Ok(4));
    assert_eq!(out(3, 2, 1, true, 8), Ok(5));
    assert_eq!(out(3, 2, 1, false, 8), Ok(4));
    assert_eq!(out(2, 2, 0, true, 7), Ok(4));
    assert!(out(3, 2, 2, false, 8).is_err());
}

#[test]
fn channel_scale_shuffle_and_slice_gradients_are_the_adjoints() {
    let scale = ChannelScale {
        scale: randn(&[1, 6, 1, 1], 5),
    };
    check_adjoint("layer scale", &Op::ChannelScale(scale), &[2, 6, 5, 7], 11);
    for groups in [1, 2, 3, 6] {
        let shuffle = Op::ChannelShuffle(ChannelShuffle { groups });
        check_adjoint(
            &format!("shuffle {groups}"),
            &shuffle,
            &[2, 6, 4, 3],
            20 + groups as u64,
        );
    }
    for (start, len) in [(0, 3), (3, 3), (1, 4)] {
        let slice = Op::ChannelSlice(ChannelSlice { start, len });
        check_adjoint(
            &format!("slice {start}+{len}"),
            &slice,
            &[2, 6, 4, 3],
            40 + start as u64,
        );
    }
    // Shuffling by 2 then by C/2 is the identity.
    let x = randn(&[1, 6, 2, 2], 3);
    let once = ChannelShuffle { groups: 2 };
    let back = ChannelShuffle { groups: 3 };
    let y = Op::ChannelShuffle(back)
        .forward(&[&Op::ChannelShuffle(once).forward(&[&x]).unwrap()])
        .unwrap();
    assert_eq!(dot(&(&y - &x).unwrap(), &(&y - &x).unwrap()), 0.0);
}

#[test]
fn the_gate_gradient_is_the_adjoint_in_each_input() {
    let x = randn(&[2, 4, 5, 3], 31);
    let s = randn(&[2, 4, 1, 1], 32);
    let y = Op::Gate(Gate).forward(&[&x, &s]).unwrap();
    let gy = randn(y.dims(), 33);
    let at = Backward {
        inputs: vec![Some(&x), Some(&s)],
        output: Some(&y),
        input_shapes: vec![x.dims().to_vec(), s.dims().to_vec()],
    };
    let grads = Op::Gate(Gate).vjp(&at, &gy).unwrap();
    assert_eq!(grads[1].dims(), s.dims());
    // y is linear in x (s fixed) and in s (x fixed): <y, g> = <x, dx> = <s, ds>.
    assert_adjoint("gate w.r.t. the input", dot(&y, &gy), dot(&x, &grads[0]));
    assert_adjoint("gate w.r.t. the weight", dot(&y, &gy), dot(&s, &grads[1]));
}

#[test]
fn channels_last_flatten_gradient_is_the_adjoint_and_reads_h_w_c() {
    let op = Op::FlattenChannelsLast(FlattenChannelsLast);
    check_adjoint("channels-last flatten", &op, &[2, 3, 4, 5], 90);
    // Element (n, c, h, w) lands at h * W * C + w * C + c, as TensorFlow's Flatten reads NHWC.
    let x = Tensor::arange(0f32, 60.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 3, 4, 5))
        .unwrap();
    let y = values(&op, &x);
    let (c, h, w) = (2, 1, 3);
    assert_eq!(y[h * 5 * 3 + w * 3 + c], (c * 20 + h * 5 + w) as f32);
}

#[test]
fn leaky_relu_and_global_max_pool_gradients_are_the_adjoints() {
    let leaky = Op::LeakyRelu(LeakyRelu {
        negative_slope: 0.2,
    });
    check_adjoint("leaky relu", &leaky, &[2, 3, 5, 4], 91);
    let x = Tensor::new(&[[[[-2f32, 1.0], [0.5, -0.1]]]], &Device::Cpu).unwrap();
    assert_eq!(values(&leaky, &x), [-0.4, 1.0, 0.5, -0.020000001]);
    check_adjoint(
        "global max pool",
        &Op::GlobalMaxPool(GlobalMaxPool),
        &[2, 3, 5, 4],
        92,
    );
    assert_eq!(values(&Op::GlobalMaxPool(GlobalMaxPool), &x), [1.0]);
}
