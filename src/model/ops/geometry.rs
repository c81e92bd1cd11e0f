//! Sliding-window geometry, axis by axis: kernel taps, stride, dilation and the zero padding
//! before and after, for height and width apart, so that 1x7 kernels, "same" padding one wider
//! on one side and non-square pools are all expressible.

/// One spatial axis of a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Zero padding before the first input element.
    pub before: usize,
    /// Zero padding after the last input element.
    pub after: usize,
}

impl Axis {
    /// Padding on both sides, no dilation.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Axis {
        Axis {
            kernel,
            stride,
            dilation: 1,
            before: padding,
            after: padding,
        }
    }

    /// Length covered by the dilated kernel.
    pub fn span(&self) -> usize {
        self.dilation * (self.kernel.max(1) - 1) + 1
    }

    /// Output length for an input of `size` (windows entirely inside the padded input).
    pub fn output(&self, size: usize) -> Result<usize, String> {
        if self.kernel == 0 || self.stride == 0 || self.dilation == 0 {
            return Err("kernel, stride and dilation must be positive".into());
        }
        (size + self.before + self.after)
            .checked_sub(self.span())
            .map(|v| v / self.stride + 1)
            .ok_or_else(|| {
                format!(
                    "input size {size} is too small for a {}-wide kernel",
                    self.kernel
                )
            })
    }
}

/// The two spatial axes of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub h: Axis,
    pub w: Axis,
}

/// One stride, padding (all four sides) and dilation for both axes: what candle's `conv2d`
/// takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uniform {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

impl Window {
    /// A `kernel`x`kernel` window with one stride, padding and dilation for both axes.
    pub fn square(kernel: usize, stride: usize, padding: usize, dilation: usize) -> Window {
        let axis = Axis {
            dilation,
            ..Axis::new(kernel, stride, padding)
        };
        Window { h: axis, w: axis }
    }

    /// Output size for an input of `(h, w)`.
    pub fn output(&self, (h, w): (usize, usize)) -> Result<(usize, usize), String> {
        Ok((self.h.output(h)?, self.w.output(w)?))
    }

    /// The single stride, padding and dilation of both axes, if they have one.
    pub fn uniform(&self) -> Option<Uniform> {
        let (h, w) = (self.h, self.w);
        (h.stride == w.stride
            && h.dilation == w.dilation
            && [h.after, w.before, w.after] == [h.before; 3])
            .then_some(Uniform {
                stride: h.stride,
                padding: h.before,
                dilation: h.dilation,
            })
    }

    /// "kernel 3x3, stride 2, padding 1", with per-axis values where the axes differ.
    pub fn describe(&self) -> String {
        let (h, w) = (self.h, self.w);
        let pair = |a: usize, b: usize| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}x{b}")
            }
        };
        let padding = if [h.after, w.before, w.after] == [h.before; 3] {
            h.before.to_string()
        } else {
            format!(
                "top {} bottom {} left {} right {}",
                h.before, h.after, w.before, w.after
            )
        };
        let mut s = format!(
            "kernel {}x{}, stride {}, padding {padding}",
            h.kernel,
            w.kernel,
            pair(h.stride, w.stride)
        );
        if (h.dilation, w.dilation) != (1, 1) {
            s += &format!(", dilation {}", pair(h.dilation, w.dilation));
        }
        s
    }
}
