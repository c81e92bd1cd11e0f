//! The nonlinear ops' hand-written gradients against central finite differences in f64
//! (`<(f(x + e v) - f(x - e v)) / 2e, g>` against `<v, vjp(g)>`), and their values at a few
//! points against PyTorch's definitions evaluated in f64 (Python's `math`, `erf` for GELU).

use candle_core::{DType, Device, Tensor};
use convscope::model::ops::{
    Activation, AdaptiveAvgPool, Backward, BatchNorm, Function, Gate, LayerNorm, Op, Pool, PoolKind,
};

fn randn(shape: &[usize], scale: f64) -> Tensor {
    (Tensor::randn(0f64, 1.0, shape, &Device::Cpu).unwrap() * scale).unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a * b).unwrap().sum_all().unwrap().to_scalar().unwrap()
}

fn check_gradient(what: &str, op: &Op, x: &Tensor) {
    let v = randn(x.dims(), 1.0);
    let y = op.forward(&[x]).unwrap();
    let g = randn(y.dims(), 1.0);
    let at = Backward {
        inputs: vec![Some(x)],
        output: Some(&y),
        input_shapes: vec![x.dims().to_vec()],
    };
    let vjp = op.vjp(&at, &g).unwrap().remove(0);
    let e = 1e-5;
    let plus = op.forward(&[&(x + (&v * e).unwrap()).unwrap()]).unwrap();
    let minus = op.forward(&[&(x - (&v * e).unwrap()).unwrap()]).unwrap();
    let numeric = dot(&((plus - minus).unwrap() / (2.0 * e)).unwrap(), &g);
    let analytic = dot(&v, &vjp);
    let rel = (numeric - analytic).abs() / numeric.abs().max(analytic.abs()).max(1e-9);
    assert!(
        rel < 1e-6,
        "{what}: finite differences {numeric}, vjp {analytic}"
    );
}

const FUNCTIONS: [Function; 6] = [
    Function::Relu6,
    Function::Silu,
    Function::Sigmoid,
    Function::Hardsigmoid,
    Function::Hardswish,
    Function::Gelu,
];

#[test]
fn activation_gradients_match_finite_differences() {
    for f in FUNCTIONS {
        // Spread over the kinks at -3, 0, 3 and 6 (a sample within 1e-5 of one is unlikely).
        let x = randn(&[2, 3, 7, 5], 4.0);
        check_gradient(&format!("{f:?}"), &Op::Activation(Activation(f)), &x);
    }
}

#[test]
fn activation_values_follow_pytorch() {
    let x = Tensor::new(&[-4.0f64, -1.0, 0.5, 2.0, 7.0], &Device::Cpu).unwrap();
    // The definitions of torch.nn.functional.{relu6, silu, sigmoid, hardsigmoid, hardswish,
    // gelu} at x, in f64.
    let expected: [(Function, [f64; 5]); 6] = [
        (Function::Relu6, [0.0, 0.0, 0.5, 2.0, 6.0]),
        (
            Function::Silu,
            [
                -0.07194483984836623,
                -0.2689414213699951,
                0.3112296656009273,
                1.7615941559557646,
                6.993622641639195,
            ],
        ),
        (
            Function::Sigmoid,
            [
                0.01798620996209156,
                0.2689414213699951,
                0.6224593312018546,
                0.8807970779778823,
                0.9990889488055994,
            ],
        ),
        (
            Function::Hardsigmoid,
            [
                0.0,
                0.3333333333333333,
                0.5833333333333334,
                0.8333333333333334,
                1.0,
            ],
        ),
        (
            Function::Hardswish,
            [
                -0.0,
                -0.3333333333333333,
                0.2916666666666667,
                1.6666666666666667,
                7.0,
            ],
        ),
        (
            Function::Gelu,
            [
                -0.00012668496733247991,
                -0.15865525393145707,
                0.34573123063700656,
                1.9544997361036416,
                6.999999999991041,
            ],
        ),
    ];
    for (f, want) in expected {
        let got: Vec<f64> = Op::Activation(Activation(f))
            .forward(&[&x])
            .unwrap()
            .to_vec1()
            .unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-10, "{f:?}: {got:?} against {want:?}");
        }
    }
}

#[test]
fn layer_norm_over_channels() {
    let c = 6;
    let op = Op::LayerNorm(LayerNorm {
        weight: randn(&[1, c, 1, 1], 1.0),
        bias: randn(&[1, c, 1, 1], 1.0),
        eps: 1e-6,
    });
    let x = randn(&[2, c, 4, 3], 2.0);
    check_gradient("layer norm", &op, &x);
    // Each pixel's channels come out with the weight's scale around the bias: with weight 1 and
    // bias 0, mean 0 and (biased) variance 1 per pixel.
    let plain = Op::LayerNorm(LayerNorm {
        weight: Tensor::ones((1, c, 1, 1), DType::F64, &Device::Cpu).unwrap(),
        bias: Tensor::zeros((1, c, 1, 1), DType::F64, &Device::Cpu).unwrap(),
        eps: 0.0,
    });
    let y = plain.forward(&[&x]).unwrap();
    let mean: Vec<f64> = y.mean(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let var: Vec<f64> = y
        .sqr()
        .unwrap()
        .mean(1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(mean.iter().all(|m| m.abs() < 1e-12), "{mean:?}");
    assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-9), "{var:?}");
}

/// One op built for a dtype from the same f64 values, with the shapes of its inputs.
struct KernelCase {
    name: String,
    op: Box<dyn Fn(DType) -> Op>,
    inputs: Vec<Vec<usize>>,
}

/// Layer norm over the channels of inputs of `shape`, with random weight and bias.
fn layer_norm_case(name: &str, shape: Vec<usize>) -> KernelCase {
    let (weight, bias) = (
        randn(&[1, shape[1], 1, 1], 1.0),
        randn(&[1, shape[1], 1, 1], 1.0),
    );
    KernelCase {
        name: name.into(),
        op: Box::new(move |d| {
            Op::LayerNorm(LayerNorm {
                weight: weight.to_dtype(d).unwrap(),
                bias: bias.to_dtype(d).unwrap(),
                eps: 1e-6,
            })
        }),
        inputs: vec![shape],
    }
}

/// The ops whose f32 path on the CPU is one of the engine's own kernels.
fn kernel_cases() -> Vec<KernelCase> {
    let shape = vec![3, 4, 9, 7];
    let mut cases: Vec<KernelCase> = FUNCTIONS
        .iter()
        .map(|&f| KernelCase {
            name: format!("{f:?}"),
            op: Box::new(move |_| Op::Activation(Activation(f))),
            inputs: vec![shape.clone()],
        })
        .collect();
    // A plane of 63 pixels and one of 2048 (blocks of several lengths).
    cases.push(layer_norm_case("layer norm", shape.clone()));
    cases.push(layer_norm_case(
        "layer norm, long planes",
        vec![2, 5, 32, 64],
    ));
    let cast = |t: &Tensor, d: DType| t.to_dtype(d).unwrap();
    let (scale, shift) = (randn(&[1, 4, 1, 1], 1.0), randn(&[1, 4, 1, 1], 1.0));
    cases.push(KernelCase {
        name: "batch norm".into(),
        op: Box::new(move |d| {
            Op::BatchNorm(BatchNorm {
                scale: cast(&scale, d),
                shift: cast(&shift, d),
            })
        }),
        inputs: vec![shape.clone()],
    });
    cases.push(KernelCase {
        name: "gate".into(),
        op: Box::new(|_| Op::Gate(Gate)),
        inputs: vec![shape.clone(), vec![3, 4, 1, 1]],
    });
    // Windows hanging over the padding and, with ceil_mode, past it (clipped divisors).
    for (kind, name) in [(PoolKind::Avg, "average"), (PoolKind::Max, "max")] {
        for (kernel, stride, padding) in [(3, 2, 1), (2, 2, 0), (3, 1, 1)] {
            cases.push(KernelCase {
                name: format!("{name} pooling {kernel}/{stride} padding {padding}, ceil_mode"),
                op: Box::new(move |_| Op::Pool(Pool::square(kind, kernel, stride, padding, true))),
                inputs: vec![vec![3, 4, 9, 7]],
            });
        }
    }
    // VGG's pools: 2x2 windows of stride 2 that never overlap, an odd row and column left out.
    cases.push(KernelCase {
        name: "max pooling 2/2".into(),
        op: Box::new(|_| Op::Pool(Pool::square(PoolKind::Max, 2, 2, 0, false))),
        inputs: vec![vec![3, 4, 9, 7]],
    });
    cases.push(KernelCase {
        name: "global average pooling".into(),
        op: Box::new(|_| Op::AdaptiveAvgPool(AdaptiveAvgPool { out_h: 1, out_w: 1 })),
        inputs: vec![shape],
    });
    cases
}

#[test]
fn the_cpu_kernels_agree_with_the_tensor_definitions() {
    // f32 on the CPU takes the engine's kernels; f64 the chains of tensor ops checked above.
    for case in kernel_cases() {
        let x64: Vec<Tensor> = case.inputs.iter().map(|s| randn(s, 4.0)).collect();
        let run = |dtype: DType| {
            let op = (case.op)(dtype);
            let xs: Vec<Tensor> = x64.iter().map(|x| x.to_dtype(dtype).unwrap()).collect();
            let refs: Vec<&Tensor> = xs.iter().collect();
            let y = op.forward(&refs).unwrap();
            // The same gradient for both dtypes: a fixed function of the output's position.
            let count = y.elem_count();
            let g = Tensor::arange(0u32, count as u32, &Device::Cpu)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .affine(0.37, 0.0)
                .unwrap()
                .sin()
                .unwrap()
                .reshape(y.dims())
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let at = Backward {
                inputs: refs.iter().map(|x| Some(*x)).collect(),
                output: Some(&y),
                input_shapes: xs.iter().map(|x| x.dims().to_vec()).collect(),
            };
            let mut outs = vec![y.clone()];
            outs.extend(op.vjp(&at, &g).unwrap());
            outs.into_iter()
                .map(|t| t.to_dtype(DType::F64).unwrap())
                .collect::<Vec<_>>()
        };
        let (ours, reference) = (run(DType::F32), run(DType::F64));
        for (k, (a, b)) in ours.iter().zip(&reference).enumerate() {
            let what = if k == 0 {
                "value".to_string()
            } else {
                format!("gradient {k}")
            };
            let worst = max_abs(&(a - b).unwrap());
            let size = max_abs(b).max(1.0);
            assert!(
                worst < 1e-5 * size,
                "{} {what}: f32 kernel off by {worst} (values up to {size})",
                case.name
            );
        }
    }
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}
