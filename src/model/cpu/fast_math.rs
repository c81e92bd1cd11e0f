//! `exp`, `erf` and the sigmoid in forms the compiler turns into vector instructions (no
//! branches, no library calls), for the activations' kernels. Both stay within a few units in
//! the last place of the standard library's results over the whole `f32` range
//! (tests below), far inside the engine's 1e-4 parity with PyTorch.

/// `e^x`: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-7 polynomial for `e^r` (Cephes'
/// coefficients) and `2^n` put straight into the exponent bits. Saturates to `e^88` above and
/// `e^-87` below, where the sigmoid and SiLU are already flat in `f32`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    // ln 2 in two parts, so that `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let e_r = (p * r * r) + r + 1.0;
    // `n` as an integer through the float's bits (adding 1.5 * 2^23 puts it in the low
    // mantissa): Rust's saturating `as i32` would not be vectorised.
    let k = (n + 12_582_912.0).to_bits() as i32 - 0x4B40_0000;
    e_r * f32::from_bits(((k + 127) as u32) << 23)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The error function: an odd rational function of degree 13 over 8 on `[-4, 4]` (the form
/// Eigen and XLA use for `f32`), where `erf` reaches 1 in `f32` beyond.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = (-2.726_142_3e-10_f32)
        .mul_add(x2, 2.770_681_4e-8)
        .mul_add(x2, -2.101_024e-6)
        .mul_add(x2, -5.692_506_4e-5)
        .mul_add(x2, -7.349_906_3e-4)
        .mul_add(x2, -2.954_6e-3)
        .mul_add(x2, -1.609_603_3e-2);
    let q = (-1.456_607_2e-5_f32)
        .mul_add(x2, -2.133_740_6e-4)
        .mul_add(x2, -1.682_827e-3)
        .mul_add(x2, -7.373_329e-3)
        .mul_add(x2, -1.426_474e-2);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `step`-th float in `lo..hi`.
    fn samples(lo: f32, hi: f32, count: usize) -> impl Iterator<Item = f32> {
        (0..=count).map(move |i| lo + (hi - lo) * i as f32 / count as f32)
    }

    #[test]
    fn exp_matches_the_standard_library() {
        for x in samples(-87.0, 88.0, 200_000) {
            let (ours, std) = (exp(x), x.exp());
            assert!(
                ((ours - std) / std).abs() < 4.0 * f32::EPSILON,
                "exp({x}): {ours} vs {std}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_matches_the_reference() {
        for x in samples(-6.0, 6.0, 200_000) {
            let (ours, reference) = (erf(x), candle_core::cpu::erf::erf_f64(x as f64) as f32);
            assert!(
                (ours - reference).abs() < 4.0 * f32::EPSILON * reference.abs().max(1e-3),
                "erf({x}): {ours} vs {reference}"
            );
        }
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(-2.0), -erf(2.0));
    }

    #[test]
    fn sigmoid_is_bounded_and_symmetric() {
        for x in samples(-200.0, 200.0, 10_000) {
            let s = sigmoid(x);
            assert!((0.0..=1.0).contains(&s), "sigmoid({x}) = {s}");
            assert!((s + sigmoid(-x) - 1.0).abs() < 2.0 * f32::EPSILON, "at {x}");
        }
    }
}
