//! Pooling nodes and the sliding-window geometry they share with convolutions (`strides`,
//! `dilations`, `pads` and `auto_pad`, per axis).

use anyhow::{anyhow, bail, Result};

use super::attributes::Attributes;
use super::import::{Layout, Outcome, Walk};
use super::proto::NodeProto;
use crate::model::ops::{
    Activation, AdaptiveAvgPool, Axis, Flatten, Function, GlobalMaxPool, Op, Pool, PoolKind, Window,
};

impl Walk<'_> {
    pub(super) fn pool(&self, node: &NodeProto, a: &Attributes, max: bool) -> Result<Outcome> {
        let (x, padding) = self.padded(node, 0)?;
        // Zeros padded in before a max pool are the pool's own padding only where no value is
        // below zero: after a ReLU (Keras ResNet's `pool1_pad`).
        let non_negative = matches!(
            self.op_of(x),
            Some(Op::Relu(_) | Op::Activation(Activation(Function::Relu6)))
        );
        if max && padding != [0; 4] && !non_negative {
            bail!("max-pools a zero-padded value that can be negative; convscope pads max pools with -inf");
        }
        let kernel = a
            .ints("kernel_shape")
            .ok_or_else(|| anyhow!("has no kernel_shape"))?;
        let [kh, kw] = kernel[..] else {
            bail!(
                "pools over {} axes; convscope pools over height and width",
                kernel.len()
            );
        };
        let (kh, kw) = (positive(kh)?, positive(kw)?);
        let size = padded_size(spatial(self.shape(x))?, padding);
        let mut window = window(a, (kh, kw), size, max)?;
        add_padding(&mut window, padding);
        let kind = match (max, a.int("count_include_pad", 0)) {
            (true, _) => PoolKind::Max,
            (false, 0) => PoolKind::AvgExcludingPadding,
            (false, _) => PoolKind::Avg,
        };
        let ceil_mode = a.int("ceil_mode", 0) != 0;
        let label = if max { "maxpool" } else { "avgpool" };
        Ok(Outcome::Node(
            label,
            Op::Pool(Pool {
                kind,
                window,
                ceil_mode,
            }),
            vec![x],
            Layout::Nchw,
        ))
    }

    pub(super) fn global_average_pool(&self, node: &NodeProto) -> Result<Outcome> {
        Ok(Outcome::Node(
            "avgpool",
            Op::AdaptiveAvgPool(AdaptiveAvgPool { out_h: 1, out_w: 1 }),
            vec![self.computed(node, 0)?],
            Layout::Nchw,
        ))
    }

    pub(super) fn global_max_pool(&self, node: &NodeProto) -> Result<Outcome> {
        Ok(Outcome::Node(
            "maxpool",
            Op::GlobalMaxPool(GlobalMaxPool),
            vec![self.computed(node, 0)?],
            Layout::Nchw,
        ))
    }

    /// A mean over height and width: global average pooling (and a flatten without kept
    /// dimensions).
    pub(super) fn reduce_mean(&mut self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let x = self.computed(node, 0)?;
        let axes: Vec<i64> = match self.optional_constant(node, 1)? {
            Some(c) => c.as_ints().unwrap_or_default().to_vec(),
            None => a.ints("axes").unwrap_or_default().to_vec(),
        };
        let rank = self.shape(x).len() as i64;
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&v| if v < 0 { v + rank } else { v })
            .collect();
        axes.sort_unstable();
        if axes != [2, 3] || rank != 4 {
            bail!("averages axes {axes:?}; convscope reads the mean over height and width");
        }
        let pool = Op::AdaptiveAvgPool(AdaptiveAvgPool { out_h: 1, out_w: 1 });
        Ok(if a.int("keepdims", 1) != 0 {
            Outcome::Node("avgpool", pool, vec![x], Layout::Nchw)
        } else {
            // `x.mean([2, 3])`: the pooling, then its (N, C) view.
            let pooled = self.push(node, "avgpool", pool, vec![x])?;
            Outcome::Node("flatten", Op::Flatten(Flatten), vec![pooled], Layout::Nchw)
        })
    }
}

impl Walk<'_> {
    /// `Pad` with zeros over height and width: kept with the value and folded into the
    /// convolution or pooling that reads it.
    pub(super) fn pad(&self, node: &NodeProto, a: &Attributes) -> Result<Outcome> {
        let (x, before) = self.padded(node, 0)?;
        if a.text("mode").is_some_and(|m| m != "constant") {
            bail!(
                "pads in mode '{}'; convscope folds zero padding only",
                a.text("mode").unwrap_or_default()
            );
        }
        let fill = match self.optional_constant(node, 2)? {
            Some(c) => c.to_floats().first().copied().unwrap_or(0.0),
            None => a.float("value", 0.0),
        };
        if fill != 0.0 {
            bail!("pads with {fill}; convscope folds zero padding only");
        }
        let pads: Vec<i64> = match self.optional_constant(node, 1)? {
            Some(c) => c
                .as_ints()
                .ok_or_else(|| anyhow!("has pads that are not integers"))?
                .to_vec(),
            None => a
                .ints("pads")
                .ok_or_else(|| anyhow!("has no pads"))?
                .to_vec(),
        };
        let [0, 0, top, left, 0, 0, bottom, right] = pads[..] else {
            bail!("pads {pads:?}; convscope folds padding of height and width (N, C, H, W) only");
        };
        let total = [
            within_extent(before[0] + padding(top)?)?,
            within_extent(before[1] + padding(bottom)?)?,
            within_extent(before[2] + padding(left)?)?,
            within_extent(before[3] + padding(right)?)?,
        ];
        Ok(Outcome::Relayout(x, Layout::Padded(total)))
    }
}

/// Adds zero padding (top, bottom, left, right) from a `Pad` before the node to its window.
pub(super) fn add_padding(window: &mut Window, [top, bottom, left, right]: [usize; 4]) {
    window.h.before += top;
    window.h.after += bottom;
    window.w.before += left;
    window.w.after += right;
}

/// `(height, width)` with a `Pad`'s zeros (top, bottom, left, right): what `auto_pad` sizes
/// its padding against.
pub(super) fn padded_size((h, w): (usize, usize), [t, b, l, r]: [usize; 4]) -> (usize, usize) {
    (h + t + b, w + l + r)
}

/// `(height, width)` of an NCHW shape.
pub(super) fn spatial(shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [_, _, h, w] => Ok((*h, *w)),
        other => bail!("reads a {other:?} value where an (N, C, H, W) image was expected"),
    }
}

/// The largest kernel, stride, dilation or padding convscope reads (sizes past it are no
/// image's, and would overflow the geometry's arithmetic).
const MAX_EXTENT: usize = 1 << 16;

pub(super) fn positive(v: i64) -> Result<usize> {
    let v = usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| anyhow!("has a size {v} that is not positive"))?;
    within_extent(v)
}

/// A padding: zero or more, within [`MAX_EXTENT`].
pub(super) fn padding(v: i64) -> Result<usize> {
    let v = usize::try_from(v).map_err(|_| anyhow!("has negative padding {v}"))?;
    within_extent(v)
}

fn within_extent(v: usize) -> Result<usize> {
    if v > MAX_EXTENT {
        bail!("has a size {v} larger than {MAX_EXTENT}");
    }
    Ok(v)
}

/// The window of a convolution or pooling node: strides, dilations and padding per axis, with
/// `auto_pad` resolved against the input size.
pub(super) fn window(
    a: &Attributes,
    (kh, kw): (usize, usize),
    (h, w): (usize, usize),
    dilated: bool,
) -> Result<Window> {
    let pair = |name: &str| -> Result<(usize, usize)> {
        match a.ints(name) {
            None => Ok((1, 1)),
            Some([y, x]) => Ok((positive(*y)?, positive(*x)?)),
            Some(other) => bail!("has {name} {other:?}; convscope reads two spatial axes"),
        }
    };
    let (sh, sw) = pair("strides")?;
    let (dh, dw) = pair("dilations")?;
    if !dilated && (dh, dw) != (1, 1) {
        bail!("has dilations {dh}x{dw}; convscope pools without dilation");
    }
    let auto_pad = a.text("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let axis = |kernel, stride, dilation, before, after| Axis {
        kernel,
        stride,
        dilation,
        before,
        after,
    };
    let same = |size: usize, k: usize, s: usize, d: usize, upper: bool| {
        let span = d * (k - 1) + 1;
        let total = ((size.div_ceil(s) - 1) * s + span).saturating_sub(size);
        let small = total / 2;
        if upper {
            (small, total - small)
        } else {
            (total - small, small)
        }
    };
    let (ph, pw) = match auto_pad.as_str() {
        "NOTSET" => match a.ints("pads") {
            None => ((0, 0), (0, 0)),
            Some(&[t, l, b, r]) => ((padding(t)?, padding(b)?), (padding(l)?, padding(r)?)),
            Some(other) => bail!("has pads {other:?}; convscope reads two spatial axes"),
        },
        "VALID" => ((0, 0), (0, 0)),
        "SAME_UPPER" | "SAME_LOWER" => {
            let upper = auto_pad == "SAME_UPPER";
            (same(h, kh, sh, dh, upper), same(w, kw, sw, dw, upper))
        }
        other => bail!("has auto_pad '{other}'"),
    };
    if a.has("pads") && auto_pad != "NOTSET" {
        bail!("has both pads and auto_pad '{auto_pad}'");
    }
    Ok(Window {
        h: axis(kh, sh, dh, ph.0, ph.1),
        w: axis(kw, sw, dw, pw.0, pw.1),
    })
}
