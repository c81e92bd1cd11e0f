//! pytorch-grad-cam's `aug_smooth`: the mean of the maps of six variants of the input
//! (horizontal flip or not, times brightness factors 0.9, 1 and 1.1 on the normalised tensor),
//! each map mapped back before averaging.

use anyhow::Result;
use candle_core::Tensor;

use super::{CamMap, CamMethod, CamSession};
use crate::model::{Model, NodeId};

/// Brightness factors of ttach's `Multiply` as pytorch-grad-cam configures it.
const FACTORS: [f64; 3] = [0.9, 1.0, 1.1];

/// Flips the last dimension of a map stored row-major as `(h, w)`.
fn flip_map(map: &[f32], w: usize) -> Vec<f32> {
    map.chunks(w)
        .flat_map(|row| row.iter().rev().copied())
        .collect()
}

/// The smoothed map of `class`; `session` is the input's own (the unchanged variant's map comes
/// from its kept pass, so only the five others run the network).
pub fn smoothed(
    session: &mut CamSession,
    model: &Model,
    input: &Tensor,
    layer: NodeId,
    method: CamMethod,
    class: usize,
) -> Result<CamMap> {
    let mut sum: Option<CamMap> = None;
    let mut count = 0f32;
    for flip in [false, true] {
        for factor in FACTORS {
            let mut m = if !flip && factor == 1.0 {
                session.compute(method, class)?
            } else {
                let mut x = input.affine(factor, 0.0)?;
                if flip {
                    x = x.flip(&[3])?;
                }
                CamSession::new(model, &x, layer)?.compute(method, class)?
            };
            if flip {
                m.map = flip_map(&m.map, m.size.1);
                m.layer_map = flip_map(&m.layer_map, m.layer_size.1);
            }
            count += 1.0;
            sum = Some(match sum {
                None => m,
                Some(mut acc) => {
                    acc.map.iter_mut().zip(&m.map).for_each(|(a, b)| *a += b);
                    acc.layer_map
                        .iter_mut()
                        .zip(&m.layer_map)
                        .for_each(|(a, b)| *a += b);
                    acc.empty &= m.empty;
                    acc.uniform &= m.uniform;
                    acc
                }
            });
        }
    }
    let mut m = sum.expect("six variants");
    m.map.iter_mut().for_each(|v| *v /= count);
    m.layer_map.iter_mut().for_each(|v| *v /= count);
    Ok(m)
}
