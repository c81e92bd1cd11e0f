//! The CAM family: each method is a weighting of the target layer's activations `A` (and the
//! class score's gradients `G` w.r.t. them) into one raw map, with pytorch-grad-cam's definitions.
//! Maps are `h*w` row-major; `A` and `G` are `C` channels of `h*w` values.

use serde::Serialize;

/// Which class activation map to compute.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum CamMethod {
    /// Selvaraju et al.: channel weights are the spatial mean of the gradients.
    Gradcam,
    /// Chattopadhyay et al., eq. 19: weights from ReLU(G) and alphas built from G^2 and G^3.
    Gradcamplusplus,
    /// Draelos and Carin: element-wise G*A summed over channels, no pooling.
    Hirescam,
    /// Fu et al.: weights sum(G*A) / sum(A) per channel.
    Xgradcam,
    /// Jiang et al.: element-wise ReLU(G)*A summed over channels.
    Layercam,
    /// Muhammad and Yeasin: the first principal component of A; no gradients.
    Eigencam,
    /// Wang et al.: each channel, upsampled and min-max scaled, masks the input; the class
    /// logits of the masked inputs, softmaxed over channels, are the weights.
    Scorecam,
    /// Zhou et al.: the final linear layer's weights of a global-average-pooled model.
    Cam,
}

impl CamMethod {
    pub const ALL: [CamMethod; 8] = [
        CamMethod::Gradcam,
        CamMethod::Gradcamplusplus,
        CamMethod::Hirescam,
        CamMethod::Xgradcam,
        CamMethod::Layercam,
        CamMethod::Eigencam,
        CamMethod::Scorecam,
        CamMethod::Cam,
    ];

    /// Whether the method needs the gradient of the class score.
    pub fn uses_gradients(self) -> bool {
        !matches!(
            self,
            CamMethod::Eigencam | CamMethod::Scorecam | CamMethod::Cam
        )
    }

    /// The display name, as pytorch-grad-cam spells it.
    pub fn title(self) -> &'static str {
        match self {
            CamMethod::Gradcam => "Grad-CAM",
            CamMethod::Gradcamplusplus => "Grad-CAM++",
            CamMethod::Hirescam => "HiResCAM",
            CamMethod::Xgradcam => "XGrad-CAM",
            CamMethod::Layercam => "LayerCAM",
            CamMethod::Eigencam => "Eigen-CAM",
            CamMethod::Scorecam => "Score-CAM",
            CamMethod::Cam => "CAM",
        }
    }

    /// The name used on the command line.
    pub fn key(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .expect("no skipped variants")
            .get_name()
            .to_string()
    }
}

/// Per-channel weights applied to `A`: `sum_c w_c A_c`.
pub fn weighted_sum(acts: &[Vec<f32>], weights: &[f32]) -> Vec<f32> {
    let mut cam = vec![0f32; acts.first().map_or(0, Vec::len)];
    for (a, &w) in acts.iter().zip(weights) {
        for (m, &v) in cam.iter_mut().zip(a) {
            *m += w * v;
        }
    }
    cam
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

pub fn grad_cam(acts: &[Vec<f32>], grads: &[Vec<f32>]) -> Vec<f32> {
    let w: Vec<f32> = grads.iter().map(|g| mean(g)).collect();
    weighted_sum(acts, &w)
}

pub fn grad_cam_plus_plus(acts: &[Vec<f32>], grads: &[Vec<f32>]) -> Vec<f32> {
    let w: Vec<f32> = acts
        .iter()
        .zip(grads)
        .map(|(a, g)| {
            let sum_a: f32 = a.iter().sum();
            g.iter()
                .map(|&gv| {
                    if gv == 0.0 {
                        return 0.0;
                    }
                    let (g2, g3) = (gv * gv, gv * gv * gv);
                    let alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-6);
                    gv.max(0.0) * alpha
                })
                .sum()
        })
        .collect();
    weighted_sum(acts, &w)
}

/// `sum_c f(G_c) * A_c` element-wise.
fn elementwise(acts: &[Vec<f32>], grads: &[Vec<f32>], f: impl Fn(f32) -> f32) -> Vec<f32> {
    let mut cam = vec![0f32; acts.first().map_or(0, Vec::len)];
    for (a, g) in acts.iter().zip(grads) {
        for ((m, &av), &gv) in cam.iter_mut().zip(a).zip(g) {
            *m += f(gv) * av;
        }
    }
    cam
}

pub fn hires_cam(acts: &[Vec<f32>], grads: &[Vec<f32>]) -> Vec<f32> {
    elementwise(acts, grads, |g| g)
}

pub fn layer_cam(acts: &[Vec<f32>], grads: &[Vec<f32>]) -> Vec<f32> {
    elementwise(acts, grads, |g| g.max(0.0))
}

pub fn xgrad_cam(acts: &[Vec<f32>], grads: &[Vec<f32>]) -> Vec<f32> {
    let w: Vec<f32> = acts
        .iter()
        .zip(grads)
        .map(|(a, g)| {
            let sum_a: f32 = a.iter().sum();
            a.iter()
                .zip(g)
                .map(|(&av, &gv)| gv * av / (sum_a + 1e-7))
                .sum()
        })
        .collect();
    weighted_sum(acts, &w)
}

/// Projection of the centred activations (`h*w` samples of `C` features) on their first
/// principal direction. An SVD's sign is arbitrary; this one makes the projection agree with
/// the channel-summed activation, so positive means "more active".
pub fn eigen_cam(acts: &[Vec<f32>]) -> Vec<f32> {
    let c = acts.len();
    let n = acts.first().map_or(0, Vec::len);
    if c == 0 || n == 0 {
        return vec![0.0; n];
    }
    let centred: Vec<Vec<f64>> = acts
        .iter()
        .map(|a| {
            let m = a.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            a.iter().map(|&v| v as f64 - m).collect()
        })
        .collect();
    // The top left singular vector u (length n) is the top eigenvector of X X^T, where X is
    // n x c; the projection X v equals s * u. Power iteration on the smaller Gram matrix.
    let projection: Vec<f64> = if n <= c {
        let gram = gram(n, |i, j| centred.iter().map(|ch| ch[i] * ch[j]).sum());
        let (u, s2) = top_eigenvector(&gram, n);
        u.iter().map(|&x| x * s2.max(0.0).sqrt()).collect()
    } else {
        let gram = gram(c, |i, j| {
            centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum()
        });
        let (v, _) = top_eigenvector(&gram, c);
        (0..n)
            .map(|i| (0..c).map(|k| centred[k][i] * v[k]).sum())
            .collect()
    };
    let total: Vec<f64> = (0..n)
        .map(|i| acts.iter().map(|a| a[i] as f64).sum())
        .collect();
    let agreement: f64 = projection.iter().zip(&total).map(|(p, t)| p * t).sum();
    let sign = if agreement < 0.0 { -1.0 } else { 1.0 };
    projection.iter().map(|&p| (sign * p) as f32).collect()
}

fn gram(size: usize, f: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let mut g = vec![0f64; size * size];
    for i in 0..size {
        for j in i..size {
            let v = f(i, j);
            g[i * size + j] = v;
            g[j * size + i] = v;
        }
    }
    g
}

/// Dominant eigenvector and eigenvalue of a symmetric positive semi-definite matrix.
fn top_eigenvector(m: &[f64], size: usize) -> (Vec<f64>, f64) {
    let mut v: Vec<f64> = (0..size)
        .map(|i| 1.0 + (i as f64 * 0.618).fract())
        .collect();
    let mut value = 0.0;
    for _ in 0..2000 {
        let mut next: Vec<f64> = (0..size)
            .map(|i| (0..size).map(|j| m[i * size + j] * v[j]).sum())
            .collect();
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return (vec![0.0; size], 0.0);
        }
        next.iter_mut().for_each(|x| *x /= norm);
        let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
        v = next;
        value = norm;
        if change < 1e-12 {
            break;
        }
    }
    (v, value)
}
