//! Image transforms on one CHW image, plus the paper's presets.
//!
//! Each transform is a plain function of an image and its shape, so it can be tested on
//! its own; the randomness is drawn by the caller (or by the `random_*` helpers) so that a
//! transform with fixed parameters is an ordinary pure function.

use rand::Rng;

use crate::{DataError, DatasetName};

/// The shape of one image: channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Number of channels (planes).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// Builds a shape.
    pub fn new(channels: usize, height: usize, width: usize) -> ImageShape {
        ImageShape { channels, height, width }
    }

    /// Values in one image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True if the image has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values in one channel plane.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }
}

/// Which random augmentations a loader applies (all off by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Augment {
    /// Random crop of the original size from the image zero-padded by this many pixels.
    pub crop_padding: Option<usize>,
    /// Horizontal flip with probability 0.5.
    pub hflip: bool,
    /// Rotation by an angle drawn uniformly from [-d, d] degrees.
    pub rotate_degrees: Option<f32>,
    /// Bilinear resize to a square of this side, before the random transforms.
    pub resize_to: Option<usize>,
}

/// Per-channel normalization `(x - mean) / std`, applied to pixels / 255.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    /// Mean per channel (one value is used for every channel).
    pub mean: Vec<f32>,
    /// Standard deviation per channel (one value is used for every channel).
    pub std: Vec<f32>,
}

impl Normalize {
    /// Checks that the statistics fit images with `channels` channels and that no std is 0.
    pub fn check(&self, channels: usize) -> Result<(), DataError> {
        let fits = |v: &[f32]| v.len() == channels || v.len() == 1;
        if !fits(&self.mean) || !fits(&self.std) {
            return Err(DataError::InvalidArgument {
                field: "normalize",
                expected: format!("1 or {channels} values for mean and std"),
                found: format!("{} means and {} stds", self.mean.len(), self.std.len()),
            });
        }
        if self.std.iter().any(|&s| !(s.is_finite() && s != 0.0)) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(DataError::InvalidArgument {
                field: "normalize",
                expected: "finite means and non-zero finite stds".into(),
                found: format!("mean {:?}, std {:?}", self.mean, self.std),
            });
        }
        Ok(())
    }

    /// (mean, std) for channel `c`.
    fn stats(&self, c: usize) -> (f32, f32) {
        let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[c] };
        (pick(&self.mean), pick(&self.std))
    }
}

/// Converts u8 pixels to f32 in [0, 1].
pub fn to_unit(img: &[u8]) -> Vec<f32> {
    img.iter().map(|&p| p as f32 / 255.0).collect()
}

/// Moves the content by (dy, dx) pixels, filling what comes in from outside with zeros.
///
/// `out[y][x] = img[y + dy][x + dx]`. A crop of size H x W taken at offset (oy, ox) from
/// the image zero-padded by p is exactly `shift(img, oy - p, ox - p)`, without building
/// the padded image.
pub fn shift<T: Copy + Default>(img: &[T], shape: ImageShape, dy: isize, dx: isize) -> Vec<T> {
    let (h, w) = (shape.height as isize, shape.width as isize);
    let mut out = vec![T::default(); shape.len()];
    // The output rows/columns whose source lies inside the image.
    let (x0, x1) = ((-dx).clamp(0, w), (w - dx).clamp(0, w));
    let (y0, y1) = ((-dy).clamp(0, h), (h - dy).clamp(0, h));
    if x0 >= x1 || y0 >= y1 {
        return out;
    }
    for c in 0..shape.channels {
        let plane = c * shape.plane();
        for y in y0..y1 {
            let dst = plane + (y * w) as usize;
            let src = plane + ((y + dy) * w) as usize;
            out[dst + x0 as usize..dst + x1 as usize]
                .copy_from_slice(&img[src + (x0 + dx) as usize..src + (x1 + dx) as usize]);
        }
    }
    out
}

/// A random crop of the original size from the image zero-padded by `padding` on each side.
pub fn random_crop<T: Copy + Default>(img: &[T], shape: ImageShape, padding: usize, rng: &mut impl Rng) -> Vec<T> {
    let p = padding as isize;
    let dy = rng.gen_range(-p..=p);
    let dx = rng.gen_range(-p..=p);
    shift(img, shape, dy, dx)
}

/// Mirrors every row (left becomes right).
pub fn hflip<T: Copy + Default>(img: &[T], shape: ImageShape) -> Vec<T> {
    let mut out = img.to_vec();
    for row in out.chunks_exact_mut(shape.width.max(1)) {
        row.reverse();
    }
    out
}

/// Samples `img` at the real position (y, x) of plane `plane`, with zeros outside.
fn bilinear_zero(img: &[f32], shape: ImageShape, plane: usize, y: f32, x: f32) -> f32 {
    let (h, w) = (shape.height as isize, shape.width as isize);
    let (y0f, x0f) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0f, x - x0f);
    let (y0, x0) = (y0f as isize, x0f as isize);
    let at = |yy: isize, xx: isize| -> f32 {
        if yy < 0 || xx < 0 || yy >= h || xx >= w {
            0.0
        } else {
            img[plane + (yy * w + xx) as usize]
        }
    };
    // The weights are exactly 1 and 0 at integer positions, so an identity mapping
    // returns the input bit for bit.
    let top = at(y0, x0) * (1.0 - fx) + if fx > 0.0 { at(y0, x0 + 1) * fx } else { 0.0 };
    if fy > 0.0 {
        let bottom = at(y0 + 1, x0) * (1.0 - fx) + if fx > 0.0 { at(y0 + 1, x0 + 1) * fx } else { 0.0 };
        top * (1.0 - fy) + bottom * fy
    } else {
        top
    }
}

/// Rotates counter-clockwise by `degrees` about the image center (bilinear, zero fill).
pub fn rotate(img: &[f32], shape: ImageShape, degrees: f32) -> Vec<f32> {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let cy = (shape.height as f32 - 1.0) / 2.0;
    let cx = (shape.width as f32 - 1.0) / 2.0;
    let mut out = vec![0.0; shape.len()];
    for c in 0..shape.channels {
        let plane = c * shape.plane();
        for y in 0..shape.height {
            for x in 0..shape.width {
                // Inverse mapping: where does this output pixel come from? With y pointing
                // down, a counter-clockwise turn on screen maps (x, y) back by +angle.
                let (u, v) = (x as f32 - cx, y as f32 - cy);
                let sx = cos * u - sin * v + cx;
                let sy = sin * u + cos * v + cy;
                out[plane + y * shape.width + x] = bilinear_zero(img, shape, plane, sy, sx);
            }
        }
    }
    out
}

/// Rotation by an angle drawn uniformly from [-max_degrees, max_degrees].
pub fn random_rotate(img: &[f32], shape: ImageShape, max_degrees: f32, rng: &mut impl Rng) -> Vec<f32> {
    let d = max_degrees.abs();
    let angle = if d > 0.0 { rng.gen_range(-d..=d) } else { 0.0 };
    rotate(img, shape, angle)
}

/// Bilinear resize to `height` x `width` (pixel centers aligned, edges clamped, the
/// convention of PIL and PyTorch's `align_corners=False`).
pub fn resize_bilinear(img: &[f32], shape: ImageShape, height: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; shape.channels * height * width];
    if shape.height == 0 || shape.width == 0 {
        return out;
    }
    // Source coordinate and blend weight for every output row / column, computed once.
    let axis = |out_len: usize, in_len: usize| -> Vec<(usize, usize, f32)> {
        let scale = in_len as f32 / out_len as f32;
        (0..out_len)
            .map(|i| {
                let s = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (in_len - 1) as f32);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(in_len - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let rows = axis(height, shape.height);
    let cols = axis(width, shape.width);
    for c in 0..shape.channels {
        let src = &img[c * shape.plane()..(c + 1) * shape.plane()];
        let dst = &mut out[c * height * width..(c + 1) * height * width];
        for (y, &(y0, y1, fy)) in rows.iter().enumerate() {
            for (x, &(x0, x1, fx)) in cols.iter().enumerate() {
                let top = src[y0 * shape.width + x0] * (1.0 - fx) + src[y0 * shape.width + x1] * fx;
                let bottom = src[y1 * shape.width + x0] * (1.0 - fx) + src[y1 * shape.width + x1] * fx;
                dst[y * width + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    out
}

/// `(x - mean[c]) / std[c]` in place, plane by plane.
pub fn normalize(img: &mut [f32], channels: usize, norm: &Normalize) {
    let plane = img.len() / channels.max(1);
    for (c, chunk) in img.chunks_mut(plane.max(1)).enumerate() {
        let (m, s) = norm.stats(c);
        let inv = 1.0 / s;
        for v in chunk {
            *v = (*v - m) * inv;
        }
    }
}

/// `x * std[c] + mean[c]` in place: undoes [`normalize`], e.g. to show a batch.
pub fn denormalize(img: &mut [f32], channels: usize, norm: &Normalize) {
    let plane = img.len() / channels.max(1);
    for (c, chunk) in img.chunks_mut(plane.max(1)).enumerate() {
        let (m, s) = norm.stats(c);
        for v in chunk {
            *v = *v * s + m;
        }
    }
}

/// The normalization the paper uses for `name` (MNIST: none beyond pixels / 255).
pub fn paper_normalize(name: DatasetName) -> Normalize {
    let (mean, std): (Vec<f32>, Vec<f32>) = match name {
        DatasetName::Mnist => (vec![0.0], vec![1.0]),
        DatasetName::FashionMnist => (vec![0.286], vec![0.353]),
        DatasetName::Cifar10 => (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225]),
        // The paper gives only the mean; the std is CIFAR-100's own.
        DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => {
            (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762])
        }
    };
    Normalize { mean, std }
}

/// The training augmentation the paper uses for `name` (none for MNIST).
pub fn paper_augment(name: DatasetName) -> Augment {
    match name {
        DatasetName::Mnist => Augment::default(),
        DatasetName::FashionMnist => {
            Augment { crop_padding: Some(4), hflip: true, rotate_degrees: None, resize_to: Some(32) }
        }
        DatasetName::Cifar10 => Augment { crop_padding: Some(4), hflip: true, ..Augment::default() },
        DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => {
            Augment { crop_padding: Some(4), hflip: true, rotate_degrees: Some(15.0), resize_to: None }
        }
    }
}
