//! Bilinear resizing of single-channel float maps.

/// Resizes a row-major `(h, w)` map to `(out_h, out_w)`.
///
/// With `align_corners == false` this is OpenCV's `INTER_LINEAR` (half-pixel centres, edges
/// clamped), which pytorch-grad-cam uses to upsample its maps; with `true` it is PyTorch's
/// `UpsamplingBilinear2d`, which Score-CAM uses for its masks.
pub fn resize_bilinear(
    map: &[f32],
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
    align_corners: bool,
) -> Vec<f32> {
    let axis = |out: usize, size: usize| -> Vec<(usize, usize, f32)> {
        (0..out)
            .map(|i| {
                let src = if align_corners {
                    if out > 1 {
                        i as f32 * (size - 1) as f32 / (out - 1) as f32
                    } else {
                        0.0
                    }
                } else {
                    ((i as f32 + 0.5) * size as f32 / out as f32 - 0.5).max(0.0)
                };
                let i0 = (src.floor() as usize).min(size - 1);
                let i1 = (i0 + 1).min(size - 1);
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(out_h, h), axis(out_w, w));
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// pytorch-grad-cam's `scale_cam_image` without resizing: `x - min`, then divided by
/// `max + 1e-7`.
pub fn min_max(map: &[f32]) -> Vec<f32> {
    let min = map.iter().copied().fold(f32::INFINITY, f32::min);
    let shifted: Vec<f32> = map.iter().map(|&v| v - min).collect();
    let max = shifted.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    shifted.iter().map(|&v| v / (1e-7 + max)).collect()
}
