//! The engine's CPU kernels against references: the convolution equals candle's `conv2d` (plus
//! bias) on every convolution of VGG16 and ResNet50, and on odd shapes (1x1 and strided 1x1, 7x7 stride 2,
//! non-square, batch > 1, dilation, grouped and depthwise, padding wider than the kernel,
//! non-contiguous inputs; each through im2col, Winograd and the direct kernel where they apply), and a direct loop where the geometry differs between the axes; max
//! pooling equals a plain loop, with padding, ceil_mode, non-square windows and NaN.

mod common;

use candle_core::{Device, Tensor};
use common::assert_close;
use convscope::model::ops::geometry::{Axis, Window};
use convscope::model::ops::{Backward, Conv2d, Op, Operation, Pool, PoolKind, Relu};
use convscope::model::Model;

/// candle's own convolution, the reference, for windows it can express.
fn reference(x: &Tensor, c: &Conv2d) -> Tensor {
    let u = c.window.uniform().expect("a uniform window");
    let y = x
        .conv2d(&c.weight, u.padding, u.stride, u.dilation, c.groups)
        .unwrap();
    match &c.bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1)).unwrap()).unwrap(),
        None => y,
    }
}

fn check(what: &str, x: &Tensor, c: &Conv2d) {
    // The second call reads what the first prepared from the weights (Winograd's kernels).
    for x in [x.clone(), (x * -0.5).unwrap()] {
        let ours = c.forward(&[&x]).unwrap();
        assert_close(what, &ours, &reference(&x, c), 1e-4);
    }
}

fn square(
    weight: Tensor,
    bias: Option<Tensor>,
    (stride, padding, dilation, groups): (usize, usize, usize, usize),
) -> Conv2d {
    Conv2d::square(weight, bias, stride, padding, dilation, groups).unwrap()
}

/// The convolution by its definition, one output at a time.
fn direct(x: &Tensor, c: &Conv2d) -> Tensor {
    let (n, ci, h, w) = x.dims4().unwrap();
    let (co, cig, kh, kw) = c.weight.dims4().unwrap();
    let cog = co / c.groups;
    let (oh, ow) = c.window.output((h, w)).unwrap();
    let (ah, aw) = (c.window.h, c.window.w);
    let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let wv = c.weight.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut out = vec![0f32; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0f32;
                    let g = o / cog;
                    for j in 0..cig {
                        let i = g * cig + j;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let y = (oy * ah.stride + ky * ah.dilation) as isize
                                    - ah.before as isize;
                                let xx = (ox * aw.stride + kx * aw.dilation) as isize
                                    - aw.before as isize;
                                if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                                    acc += xv[((b * ci + i) * h + y as usize) * w + xx as usize]
                                        * wv[((o * cig + j) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                    out[((b * co + o) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    Tensor::from_vec(out, (n, co, oh, ow), x.device()).unwrap()
}

#[test]
fn every_convolution_of_vgg16_and_resnet50() {
    let dev = Device::Cpu;
    let mut seen = Vec::new();
    for arch in ["vgg16", "resnet50"] {
        // 64x64 keeps the test quick; kernels, strides, paddings and channels are the real ones.
        let graph = Model::random(arch, 64, 1, &dev).unwrap().graph;
        for node in graph.nodes() {
            let Op::Conv2d(c) = &node.op else { continue };
            let input = &graph.node(node.inputs[0]).shape;
            let key = (input.clone(), c.weight.dims().to_vec(), c.window);
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let mut shape = input.clone();
            shape[0] = 2;
            let x = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            check(&format!("{arch} {}", node.name), &x, c);
        }
    }
    assert!(seen.len() > 20, "only {} distinct convolutions", seen.len());
}

#[test]
fn odd_shapes() {
    let dev = Device::Cpu;
    // (batch, in, out, h, w, kernel, stride, padding, dilation, groups, bias)
    let cases = [
        (1, 3, 8, 33, 47, 7, 2, 3, 1, 1, true),
        (3, 5, 7, 9, 13, 1, 1, 0, 1, 1, true),
        (2, 6, 4, 10, 7, 1, 2, 0, 1, 1, false),
        // Strided 1x1 read in place from the phase planes: with padding, stride 3, odd sizes.
        (2, 6, 4, 10, 7, 1, 2, 1, 1, 1, true),
        (1, 5, 3, 9, 11, 1, 3, 0, 1, 1, false),
        (1, 4, 6, 17, 11, 3, 2, 1, 1, 1, true),
        (2, 6, 6, 12, 9, 3, 1, 2, 2, 1, false),
        (1, 8, 8, 11, 14, 3, 1, 1, 1, 8, true),
        (2, 6, 9, 13, 16, 3, 3, 1, 1, 3, false),
        (1, 2, 3, 5, 6, 3, 1, 4, 1, 1, true),
        (1, 3, 2, 10, 9, 5, 1, 0, 2, 1, true),
        (4, 16, 32, 3, 3, 3, 1, 1, 1, 1, true),
        (1, 1, 1, 1, 1, 1, 1, 0, 1, 1, false),
        (1, 300, 70, 150, 3, 3, 1, 1, 1, 1, true),
        // Batches through wide 3x3 stride-1 layers take the Winograd kernel: odd sizes,
        // paddings 0..2 (filter patterns on VGG16), each with enough tiles for it; the same
        // shape of one image takes im2col.
        (2, 256, 256, 29, 31, 3, 1, 1, 1, 1, true),
        (1, 256, 256, 29, 31, 3, 1, 1, 1, 1, true),
        (2, 256, 272, 24, 25, 3, 1, 0, 1, 1, false),
        (3, 260, 256, 28, 28, 3, 1, 2, 1, 1, true),
        // ... and 64-channel ones down to 12x12 outputs: padding 0 and odd sizes.
        (2, 64, 80, 15, 22, 3, 1, 0, 1, 1, true),
        (2, 96, 64, 30, 17, 3, 1, 1, 1, 1, false),
        // Wide enough for whole runs of 16 tiles inside the image (the gathered fast path).
        (2, 64, 64, 20, 150, 3, 1, 1, 1, 1, true),
        (2, 64, 72, 23, 141, 3, 1, 0, 1, 1, false),
        // 128 taps or more per output take the direct kernel (AVX2 or AVX-512): three passes
        // over 64 channels into 120 outputs (a partial block) on 9x11, a batch of 7x7 maps,
        // strided, dilated with padding wider than half the kernel, the 7x7/2 stem's 3
        // channels, 1x1s of one image (stride 1, and stride 2 gathered)
        (1, 64, 120, 9, 11, 3, 1, 1, 1, 1, true),
        (3, 48, 64, 7, 7, 3, 1, 1, 1, 1, false),
        (1, 40, 64, 15, 13, 3, 2, 1, 1, 1, true),
        (1, 32, 64, 12, 12, 5, 1, 4, 2, 1, true),
        (2, 3, 64, 30, 30, 7, 2, 3, 1, 1, true),
        (1, 256, 64, 12, 10, 1, 1, 0, 1, 1, true),
        (1, 130, 64, 9, 13, 1, 1, 0, 1, 1, false),
        (1, 256, 64, 17, 15, 1, 1, 0, 1, 1, true),
        (1, 260, 128, 21, 19, 1, 2, 0, 1, 1, false),
        // ... and of a batch: small maps, and strided (gathered).
        (3, 256, 64, 7, 9, 1, 1, 0, 1, 1, true),
        (3, 256, 64, 13, 15, 1, 2, 0, 1, 1, false),
        // A 1x1 of one image over a larger map with fewer channels: im2col's multiply reads the
        // input in place, the output channels cut between threads (67: unequal parts).
        (1, 40, 67, 17, 15, 1, 1, 0, 1, 1, true),
        (1, 128, 67, 16, 16, 1, 1, 0, 1, 1, false),
        // Depthwise (its own kernel): stride 2, 5x5, ConvNeXt's 7x7, dilation 2, batch 2.
        (2, 16, 16, 15, 17, 3, 2, 1, 1, 16, true),
        (1, 12, 12, 14, 14, 5, 1, 2, 1, 12, false),
        (1, 8, 8, 20, 21, 7, 1, 3, 1, 8, true),
        (1, 8, 8, 13, 11, 3, 1, 2, 2, 8, true),
        (2, 6, 6, 9, 9, 5, 2, 2, 1, 6, true),
    ];
    for (i, &(n, ci, co, h, w, k, s, p, d, g, bias)) in cases.iter().enumerate() {
        let c = square(
            Tensor::randn(0f32, 1.0, (co, ci / g, k, k), &dev).unwrap(),
            bias.then(|| Tensor::randn(0f32, 1.0, co, &dev).unwrap()),
            (s, p, d, g),
        );
        let x = Tensor::randn(0f32, 1.0, (n, ci, h, w), &dev).unwrap();
        check(&format!("case {i}"), &x, &c);
    }
}

#[test]
fn non_contiguous_input_and_rectangular_kernel() {
    let dev = Device::Cpu;
    // (output, input channels): im2col's, and the direct kernel's.
    for (co, ci) in [(5, 4), (64, 48)] {
        let c = square(
            Tensor::randn(0f32, 1.0, (co, ci, 3, 5), &dev).unwrap(),
            Some(Tensor::randn(0f32, 1.0, co, &dev).unwrap()),
            (1, 2, 1, 1),
        );
        // A transposed and narrowed view, not laid out contiguously.
        let x = Tensor::randn(0f32, 1.0, (2, ci, 19, 23), &dev)
            .unwrap()
            .transpose(2, 3)
            .unwrap()
            .narrow(3, 2, 15)
            .unwrap();
        check(&format!("strided view, 3x5 kernel, {ci} channels"), &x, &c);
    }
}

#[test]
fn per_axis_geometry_equals_the_definition() {
    let dev = Device::Cpu;
    for (i, (kh, kw, window)) in common::per_axis_windows().into_iter().enumerate() {
        // (output channels, input channels per group, groups): plain, depthwise, and wide
        // enough for the direct kernel.
        for (co, cig, groups) in [(4, 3, 1), (3, 1, 3), (64, 48, 1)] {
            let weight = Tensor::randn(0f32, 1.0, (co, cig, kh, kw), &dev).unwrap();
            let c = Conv2d::new(weight, None, window, groups);
            let x = Tensor::randn(0f32, 1.0, (2, cig * groups, 13, 10), &dev).unwrap();
            let ours = c.forward(&[&x]).unwrap();
            let what = format!("per-axis case {i}, {groups} groups");
            assert_close(&what, &ours, &direct(&x, &c), 1e-4);
        }
    }
}

#[test]
fn mismatched_channels_are_an_error() {
    let dev = Device::Cpu;
    let weight = Tensor::zeros((4, 3, 3, 3), candle_core::DType::F32, &dev).unwrap();
    let c = square(weight.clone(), None, (1, 1, 1, 1));
    let x = Tensor::zeros((1, 5, 8, 8), candle_core::DType::F32, &dev).unwrap();
    assert!(c.forward(&[&x]).is_err());
    let tiny = Tensor::zeros((1, 3, 1, 1), candle_core::DType::F32, &dev).unwrap();
    let c0 = square(weight, None, (1, 0, 1, 1));
    assert!(c0.forward(&[&tiny]).is_err());
}

/// Max pooling by definition: each window clipped to the input, NaN propagating.
fn max_pool_reference(x: &Tensor, p: &Pool) -> Tensor {
    let (n, c, h, w) = x.dims4().unwrap();
    let (oh, ow) = p.output((h, w)).unwrap();
    let (ah, aw) = (p.window.h, p.window.w);
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut out = Vec::new();
    for plane in v.chunks(h * w).take(n * c) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..ah.kernel {
                    for kx in 0..aw.kernel {
                        let (y, x) = (
                            (oy * ah.stride + ky) as isize - ah.before as isize,
                            (ox * aw.stride + kx) as isize - aw.before as isize,
                        );
                        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                            let v = plane[y as usize * w + x as usize];
                            if v > m || v.is_nan() {
                                m = v;
                            }
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    Tensor::from_vec(out, (n, c, oh, ow), x.device()).unwrap()
}

#[test]
fn max_pooling_with_padding_ceil_mode_and_nan() {
    let dev = Device::Cpu;
    // (kernel, stride, padding, ceil_mode, h, w)
    let cases = [
        (2, 2, 0, false, 224, 224),
        (3, 2, 1, false, 112, 112),
        (3, 2, 1, true, 15, 20),
        (2, 2, 0, true, 7, 9),
        (3, 3, 0, true, 10, 11),
        (3, 1, 1, false, 5, 6),
    ];
    let mut pools: Vec<Pool> = cases
        .iter()
        .map(|&(k, s, p, ceil, _, _)| Pool::square(PoolKind::Max, k, s, p, ceil))
        .collect();
    // A non-square window with different strides and padding.
    pools.push(Pool {
        kind: PoolKind::Max,
        window: Window {
            h: Axis::new(3, 2, 1),
            w: Axis::new(2, 1, 0),
        },
        ceil_mode: false,
    });
    let sizes = cases.iter().map(|c| (c.4, c.5)).chain([(9, 7)]);
    for (pool, (h, w)) in pools.iter().zip(sizes) {
        let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap();
        let ours = pool.forward(&[&x]).unwrap();
        assert_close(
            &format!("{pool:?}"),
            &ours,
            &max_pool_reference(&x, pool),
            0.0,
        );
    }
    let mut v = vec![1f32; 16];
    v[5] = f32::NAN;
    let x = Tensor::from_vec(v, (1, 1, 4, 4), &dev).unwrap();
    let y = Pool::square(PoolKind::Max, 2, 2, 0, false)
        .forward(&[&x])
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(y[0].is_nan() && y[1..].iter().all(|v| *v == 1.0), "{y:?}");
}

#[test]
fn max_pooling_gradient_goes_to_the_first_largest_value() {
    // Values from a small set (ties everywhere) and a few NaNs: each window's gradient goes to
    // its first largest value in row-major order, the first NaN winning, as PyTorch's.
    let dev = Device::Cpu;
    for (k, s, p, (h, w)) in [(2, 2, 0, (9, 8)), (2, 2, 0, (8, 11)), (3, 2, 1, (9, 8))] {
        let pool = Pool::square(PoolKind::Max, k, s, p, false);
        let n = 2 * 3 * h * w;
        let v: Vec<f32> = (0..n)
            .map(|i| match (i * 7919) % 23 {
                0 => f32::NAN,
                r => (r % 3) as f32,
            })
            .collect();
        let x = Tensor::from_vec(v.clone(), (2, 3, h, w), &dev).unwrap();
        let y = pool.forward(&[&x]).unwrap();
        let (oh, ow) = (y.dims()[2], y.dims()[3]);
        let g: Vec<f32> = (0..y.elem_count()).map(|i| 1.0 + i as f32).collect();
        let gy = Tensor::from_vec(g.clone(), y.dims(), &dev).unwrap();
        let at = Backward {
            inputs: vec![Some(&x)],
            output: Some(&y),
            input_shapes: vec![x.dims().to_vec()],
        };
        let ours = Op::Pool(pool).vjp(&at, &gy).unwrap().remove(0);
        let mut expected = vec![0f32; n];
        for plane in 0..6 {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best: Option<(usize, f32)> = None;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (
                                (oy * s + ky) as isize - p as isize,
                                (ox * s + kx) as isize - p as isize,
                            );
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            let at = plane * h * w + iy as usize * w + ix as usize;
                            let val = v[at];
                            let wins = match best {
                                None => true,
                                Some((_, b)) => val > b || val.is_nan() && !b.is_nan(),
                            };
                            if wins {
                                best = Some((at, val));
                            }
                        }
                    }
                    let (at, _) = best.expect("a window inside the input");
                    expected[at] += g[(plane * oh + oy) * ow + ox];
                }
            }
        }
        let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ours, expected, "{k}x{k}/{s} padding {p} on {h}x{w}");
    }
}

#[test]
fn max_pooling_gradient_off_the_cpu_kernel_reads_only_what_it_declares() {
    // Every device but the CPU (f32) takes the pooling's generic reverse pass (CUDA; f64 on the
    // CPU here). The forward pass keeps only what `reverse_reads` names, so each path must do
    // with that alone, and both give the gradient to the same (first) largest value.
    use convscope::model::ops::Reads;
    let dev = Device::Cpu;
    for (k, s, p, ceil, (h, w)) in [(2, 2, 0, false, (9, 8)), (3, 2, 1, true, (10, 7))] {
        let pool = Op::Pool(Pool::square(PoolKind::Max, k, s, p, ceil));
        let Reads { inputs, output } = pool.reverse_reads();
        let v: Vec<f32> = (0..2 * 3 * h * w)
            .map(|i| ((i * 7919) % 23 % 4) as f32)
            .collect();
        let x = Tensor::from_vec(v, (2, 3, h, w), &dev).unwrap();
        let gradient = |x: &Tensor| {
            let y = pool.forward(&[x]).unwrap();
            let gy = Tensor::arange(1f32, 1.0 + y.elem_count() as f32, &dev)
                .unwrap()
                .reshape(y.dims())
                .unwrap()
                .to_dtype(x.dtype())
                .unwrap();
            let at = Backward {
                inputs: vec![inputs.then_some(x)],
                output: output.then_some(&y),
                input_shapes: vec![x.dims().to_vec()],
            };
            let g = pool.vjp(&at, &gy).unwrap().remove(0);
            g.to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let generic = gradient(&x.to_dtype(candle_core::DType::F64).unwrap());
        assert_eq!(
            generic,
            gradient(&x),
            "{k}x{k}/{s} padding {p}, ceil mode {ceil} on {h}x{w}"
        );
    }
}

#[test]
fn relu_forward_and_its_gradient() {
    let dev = Device::Cpu;
    let mut v: Vec<f32> = (0..300_000u64)
        .map(|i| ((i * 7919) % 1000) as f32 - 500.0)
        .collect();
    v[17] = f32::NAN;
    let x = Tensor::from_vec(v, (3, 4, 250, 100), &dev).unwrap();
    let y = Relu.forward(&[&x]).unwrap();
    let reference = x.relu().unwrap();
    let (a, b): (Vec<f32>, Vec<f32>) = (
        y.flatten_all().unwrap().to_vec1().unwrap(),
        reference.flatten_all().unwrap().to_vec1().unwrap(),
    );
    assert!(a[17].is_nan(), "NaN is kept, as in PyTorch");
    assert!(a
        .iter()
        .zip(&b)
        .enumerate()
        .all(|(i, (p, q))| i == 17 || p == q));
    // Through a graph: the gradient of sum(relu(x) * g) is g where x > 0.
    let mut graph = convscope::model::Graph::new(4, 250, 100);
    let relu = graph.add("relu", Op::Relu(Relu), &[graph.input()]).unwrap();
    let g = Tensor::randn(0f32, 1.0, (3, 4, 250, 100), &dev).unwrap();
    let x = x.relu().unwrap().affine(1.0, -100.0).unwrap();
    let acts = graph.forward(&x, &convscope::model::Keep::All).unwrap();
    let grad = graph.gradient(&acts, graph.input(), relu, &g).unwrap();
    let expected = (&g
        * x.gt(0f64)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap())
    .unwrap();
    assert_close("relu gradient", &grad, &expected, 0.0);
}
