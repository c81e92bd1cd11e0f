//! The pointing game (Zhang et al. 2016): a map hits when its strongest pixel lies on the
//! object of its class.

use crate::shapes::BoundingBox;

/// Whether the largest value of `map` (`width` pixels to a row) lies in `object`, with
/// `margin` pixels of slack (the original game's 15 pixels at ImageNet's size).
pub fn hit(map: &[f32], width: usize, object: &BoundingBox, margin: u32) -> bool {
    let peak = map
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    object.contains((peak % width) as u32, (peak / width) as u32, margin)
}
