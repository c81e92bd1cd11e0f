//! Linear ops' hand-written gradients are their exact adjoints: <f(x), g> == <x, f^T(g)>.
//! Covers shapes the PyTorch fixtures do not: dilation, depthwise groups, strides that leave a
//! remainder, non-square inputs, average pooling with ceil_mode.

use candle_core::{Device, Tensor};
use convscope::model::conv_input_grad;
use convscope::model::ops::{Conv2d, Op, PoolKind};
use convscope::model::pool::{
    adaptive_avg_pool, adaptive_avg_pool_backward, pool_backward, pool_forward, PoolGeometry,
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

#[test]
fn convolution_input_gradient_is_the_adjoint() {
    // (batch, in, out, h, w, kernel, stride, padding, dilation, groups)
    let cases = [
        (1, 3, 5, 9, 13, 3, 1, 1, 1, 1),
        (2, 4, 6, 17, 11, 3, 2, 1, 1, 1),
        (1, 3, 4, 20, 15, 7, 2, 3, 1, 1),
        (1, 4, 4, 10, 10, 1, 2, 0, 1, 1),
        (1, 6, 6, 12, 9, 3, 1, 2, 2, 1),
        (1, 8, 8, 11, 14, 3, 1, 1, 1, 8),
        (2, 6, 9, 13, 16, 3, 3, 1, 1, 3),
        (1, 2, 3, 8, 8, 3, 1, 0, 1, 1),
    ];
    for (i, &(n, ci, co, h, w, k, s, p, d, g)) in cases.iter().enumerate() {
        let conv = Conv2d {
            weight: randn(&[co, ci / g, k, k], i as u64 + 1),
            bias: None,
            stride: s,
            padding: p,
            dilation: d,
            groups: g,
        };
        let x = randn(&[n, ci, h, w], 100 + i as u64);
        let y = Op::Conv2d(conv.clone()).forward(&[&x]).unwrap();
        let gy = randn(y.dims(), 200 + i as u64);
        let gx = conv_input_grad(&gy, &conv, (h, w)).unwrap();
        assert_eq!(gx.dims(), x.dims(), "case {i}");
        assert_adjoint(&format!("conv case {i}"), dot(&y, &gy), dot(&x, &gx));
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
        let g = PoolGeometry {
            kernel: k,
            stride: s,
            padding: p,
            ceil_mode: ceil,
        };
        let x = randn(&[2, 3, h, w], i as u64);
        let y = pool_forward(&x, PoolKind::Avg, &g).unwrap();
        let gy = randn(y.dims(), 50 + i as u64);
        let gx = pool_backward(&x, &y, &gy, PoolKind::Avg, &g).unwrap();
        assert_adjoint(&format!("avg pool case {i}"), dot(&y, &gy), dot(&x, &gx));
    }
}

#[test]
fn adaptive_pooling_gradient_is_the_adjoint() {
    for (i, &(h, w, oh, ow)) in [(2, 3, 7, 7), (14, 14, 7, 7), (10, 13, 3, 4), (5, 5, 1, 1)]
        .iter()
        .enumerate()
    {
        let x = randn(&[1, 2, h, w], i as u64);
        let y = adaptive_avg_pool(&x, oh, ow).unwrap();
        assert_eq!(y.dims(), [1, 2, oh, ow]);
        let gy = randn(y.dims(), 9 + i as u64);
        let gx = adaptive_avg_pool_backward(&gy, (h, w)).unwrap();
        assert_adjoint(&format!("adaptive case {i}"), dot(&y, &gy), dot(&x, &gx));
    }
}

#[test]
fn ceil_mode_output_sizes_follow_pytorch() {
    // torch.nn.MaxPool2d(3, 2, ceil_mode=True) on 10 gives 5; on 9 gives 4; with padding 1 on 8: 5.
    let g = |k, s, p, c| PoolGeometry {
        kernel: k,
        stride: s,
        padding: p,
        ceil_mode: c,
    };
    assert_eq!(g(3, 2, 0, true).output_size(10), Ok(5));
    assert_eq!(g(3, 2, 0, true).output_size(9), Ok(4));
    assert_eq!(g(3, 2, 1, true).output_size(8), Ok(5));
    assert_eq!(g(3, 2, 1, false).output_size(8), Ok(4));
    assert_eq!(g(2, 2, 0, true).output_size(7), Ok(4));
    assert!(g(3, 2, 2, false).output_size(8).is_err());
}
