//! The synthetic shapes dataset of the bundled demo model: seeded RGB images with one shape, or
//! two shapes of different classes, of random colour, size, position and rotation, on cluttered
//! backgrounds, each object with its bounding box.

use image::{Rgb, RgbImage};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Class names, in label order.
pub const CLASSES: [&str; 6] = ["circle", "square", "triangle", "star", "cross", "ring"];

/// Side of the generated images.
pub const IMAGE_SIZE: u32 = 96;

/// Pixel box `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundingBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl BoundingBox {
    /// Whether pixel `(x, y)` lies inside, with `margin` pixels of slack on every side.
    pub fn contains(&self, x: u32, y: u32, margin: u32) -> bool {
        x + margin >= self.x0
            && x < self.x1 + margin
            && y + margin >= self.y0
            && y < self.y1 + margin
    }

    fn overlaps(&self, o: &BoundingBox, gap: u32) -> bool {
        self.x0 < o.x1 + gap && o.x0 < self.x1 + gap && self.y0 < o.y1 + gap && o.y0 < self.y1 + gap
    }
}

/// One drawn object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object {
    pub class: usize,
    pub bbox: BoundingBox,
}

/// An image and the objects drawn in it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: RgbImage,
    pub objects: Vec<Object>,
}

/// Deterministic generator: the same seed gives the same images.
pub struct Generator {
    rng: StdRng,
}

/// Placement of a shape: centre, radius (pixels), rotation (radians).
#[derive(Debug, Clone, Copy)]
struct Pose {
    cx: f32,
    cy: f32,
    radius: f32,
    angle: f32,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// An image with one shape of a random class.
    pub fn single(&mut self) -> Sample {
        let class = self.rng.random_range(0..CLASSES.len());
        self.single_of(class)
    }

    /// An image with one shape of the given class.
    pub fn single_of(&mut self, class: usize) -> Sample {
        let mut image = self.background();
        let pose = self.pose(14.0..30.0);
        let bbox = self.draw(&mut image, class, pose);
        Sample {
            image,
            objects: vec![Object { class, bbox }],
        }
    }

    /// An image with two shapes of different classes whose boxes do not touch.
    pub fn pair(&mut self) -> Sample {
        let a = self.rng.random_range(0..CLASSES.len());
        let b = (a + self.rng.random_range(1..CLASSES.len())) % CLASSES.len();
        loop {
            let (pa, pb) = (self.pose(11.0..20.0), self.pose(11.0..20.0));
            let (ba, bb) = (pose_box(pa), pose_box(pb));
            if ba.overlaps(&bb, 4) {
                continue;
            }
            let mut image = self.background();
            let ba = self.draw(&mut image, a, pa);
            let bb = self.draw(&mut image, b, pb);
            return Sample {
                image,
                objects: vec![Object { class: a, bbox: ba }, Object { class: b, bbox: bb }],
            };
        }
    }

    fn pose(&mut self, radius: std::ops::Range<f32>) -> Pose {
        let r = self.rng.random_range(radius);
        let size = IMAGE_SIZE as f32;
        Pose {
            cx: self.rng.random_range(r + 1.0..size - r - 1.0),
            cy: self.rng.random_range(r + 1.0..size - r - 1.0),
            radius: r,
            angle: self.rng.random_range(0.0..std::f32::consts::TAU),
        }
    }

    fn colour(&mut self) -> [f32; 3] {
        [0, 1, 2].map(|_| self.rng.random_range(0.0..255.0))
    }

    /// A linear gradient between two colours, Gaussian noise and a few thin lines.
    fn background(&mut self) -> RgbImage {
        let (c0, c1) = (self.colour(), self.colour());
        let angle: f32 = self.rng.random_range(0.0..std::f32::consts::TAU);
        let (dx, dy) = (angle.cos(), angle.sin());
        let noise = Normal::new(0.0f32, self.rng.random_range(2.0..12.0)).expect("positive");
        let size = IMAGE_SIZE as f32;
        let mut img = RgbImage::new(IMAGE_SIZE, IMAGE_SIZE);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let t = ((x as f32 / size - 0.5) * dx + (y as f32 / size - 0.5) * dy + 0.75) / 1.5;
            let n = noise.sample(&mut self.rng);
            *p = Rgb([0, 1, 2].map(|c| (c0[c] + (c1[c] - c0[c]) * t + n).clamp(0.0, 255.0) as u8));
        }
        for _ in 0..self.rng.random_range(1..4) {
            let colour = self.colour();
            let (x0, y0) = (
                self.rng.random_range(0.0..size),
                self.rng.random_range(0.0..size),
            );
            let (x1, y1) = (
                self.rng.random_range(0.0..size),
                self.rng.random_range(0.0..size),
            );
            let steps = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
            for s in 0..=steps {
                let t = s as f32 / steps as f32;
                let (x, y) = ((x0 + (x1 - x0) * t) as u32, (y0 + (y1 - y0) * t) as u32);
                if x < IMAGE_SIZE && y < IMAGE_SIZE {
                    img.put_pixel(x, y, Rgb(colour.map(|v| v as u8)));
                }
            }
        }
        img
    }

    /// Draws a shape with 4x4 supersampling; returns the box of its covered pixels.
    fn draw(&mut self, img: &mut RgbImage, class: usize, pose: Pose) -> BoundingBox {
        let bg_mean = mean_colour(img, pose_box(pose));
        let colour = loop {
            let c = self.colour();
            let dist: f32 = (0..3)
                .map(|i| (c[i] - bg_mean[i]).powi(2))
                .sum::<f32>()
                .sqrt();
            if dist > 120.0 {
                break c;
            }
        };
        let outer = pose_box(pose);
        let (cos, sin) = (pose.angle.cos(), pose.angle.sin());
        let mut bbox = BoundingBox {
            x0: u32::MAX,
            y0: u32::MAX,
            x1: 0,
            y1: 0,
        };
        for y in outer.y0..outer.y1 {
            for x in outer.x0..outer.x1 {
                let mut hits = 0;
                for sy in 0..4 {
                    for sx in 0..4 {
                        let px = x as f32 + (sx as f32 + 0.5) / 4.0 - pose.cx;
                        let py = y as f32 + (sy as f32 + 0.5) / 4.0 - pose.cy;
                        // Into the shape's own frame: unrotate and scale to the unit radius.
                        let u = (px * cos + py * sin) / pose.radius;
                        let v = (-px * sin + py * cos) / pose.radius;
                        hits += inside(class, u, v) as u32;
                    }
                }
                if hits == 0 {
                    continue;
                }
                let a = hits as f32 / 16.0;
                let p = img.get_pixel_mut(x, y);
                *p = Rgb([0, 1, 2].map(|c| (p.0[c] as f32 * (1.0 - a) + colour[c] * a) as u8));
                if a >= 0.5 {
                    bbox = BoundingBox {
                        x0: bbox.x0.min(x),
                        y0: bbox.y0.min(y),
                        x1: bbox.x1.max(x + 1),
                        y1: bbox.y1.max(y + 1),
                    };
                }
            }
        }
        bbox
    }
}

/// The pixels a pose can touch.
fn pose_box(p: Pose) -> BoundingBox {
    let lo = |c: f32| (c - p.radius - 1.0).max(0.0) as u32;
    let hi = |c: f32| ((c + p.radius + 2.0) as u32).min(IMAGE_SIZE);
    BoundingBox {
        x0: lo(p.cx),
        y0: lo(p.cy),
        x1: hi(p.cx),
        y1: hi(p.cy),
    }
}

fn mean_colour(img: &RgbImage, b: BoundingBox) -> [f32; 3] {
    let mut sum = [0f32; 3];
    let mut n = 0f32;
    for y in b.y0..b.y1 {
        for x in b.x0..b.x1 {
            for (s, &v) in sum.iter_mut().zip(&img.get_pixel(x, y).0) {
                *s += v as f32;
            }
            n += 1.0;
        }
    }
    sum.map(|s| s / n.max(1.0))
}

/// Whether the point `(u, v)` of the unit frame lies inside the shape of `class`.
fn inside(class: usize, u: f32, v: f32) -> bool {
    let r = (u * u + v * v).sqrt();
    match CLASSES[class] {
        "circle" => r <= 1.0,
        "ring" => (0.6..=1.0).contains(&r),
        "square" => u.abs() <= 0.75 && v.abs() <= 0.75,
        "cross" => (u.abs() <= 1.0 && v.abs() <= 0.3) || (u.abs() <= 0.3 && v.abs() <= 1.0),
        "triangle" => in_polygon(&regular(3, 1.0, 1.0), u, v),
        "star" => in_polygon(&regular(5, 1.0, 0.42), u, v),
        _ => false,
    }
}

/// Vertices of a regular polygon (`inner == outer`) or a star with `points` tips.
fn regular(points: usize, outer: f32, inner: f32) -> Vec<(f32, f32)> {
    let star = inner != outer;
    let n = if star { points * 2 } else { points };
    (0..n)
        .map(|i| {
            let a = -std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::TAU / n as f32;
            let r = if star && i % 2 == 1 { inner } else { outer };
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

/// Even-odd rule.
fn in_polygon(poly: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}
