//! The nonlinear ops' hand-written gradients against central finite differences in f64
//! (`<(f(x + e v) - f(x - e v)) / 2e, g>` against `<v, vjp(g)>`), and their values at a few
//! points against PyTorch's definitions evaluated in f64 (Python's `math`, `erf` for GELU).

use candle_core::{DType, Device, Tensor};
use convscope::model::ops::{Activation, Backward, Function, LayerNorm, Op};

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

#[test]
fn the_cpu_kernels_agree_with_the_tensor_definitions() {
    // f32 on the CPU takes the one-pass kernels; f64 the chains of tensor ops checked above.
    let x64 = randn(&[3, 4, 9, 7], 4.0);
    let g64 = randn(&[3, 4, 9, 7], 1.0);
    let (x32, g32) = (
        x64.to_dtype(DType::F32).unwrap(),
        g64.to_dtype(DType::F32).unwrap(),
    );
    for f in FUNCTIONS {
        let op = Op::Activation(Activation(f));
        let run = |x: &Tensor, g: &Tensor| {
            let y = op.forward(&[x]).unwrap();
            let at = Backward {
                inputs: vec![Some(x)],
                output: Some(&y),
                input_shapes: vec![x.dims().to_vec()],
            };
            let dx = op.vjp(&at, g).unwrap().remove(0);
            (
                y.to_dtype(DType::F64).unwrap(),
                dx.to_dtype(DType::F64).unwrap(),
            )
        };
        let (y32, d32) = run(&x32, &g32);
        let (y64, d64) = run(&x64, &g64);
        for (what, a, b) in [("value", &y32, &y64), ("gradient", &d32, &d64)] {
            let worst: f64 = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_keepdim(0)
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(worst < 1e-4, "{f:?} {what}: f32 kernel off by {worst}");
        }
    }
}
