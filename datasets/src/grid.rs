//! Pictures of samples, to look at what the model sees (`sph data show`).

use image::{Rgb, RgbImage};

use crate::augment::{denormalize, Normalize};
use crate::{Batch, Dataset};

/// Pixels between tiles.
const GAP: u32 = 2;
/// Color of the gaps, a dark gray that is neither a digit's black nor its white.
const BACKGROUND: Rgb<u8> = Rgb([48, 48, 48]);

/// Draws images `indices` of `ds` in a grid of `cols` columns, each pixel `scale` x `scale`.
/// Gray images are expanded to RGB; indices past the end leave their tile empty.
pub fn sample_grid(ds: &Dataset, indices: &[usize], cols: usize, scale: u32) -> RgbImage {
    let tiles: Vec<Option<Vec<f32>>> = indices
        .iter()
        .map(|&i| (i < ds.len).then(|| ds.image(i).iter().map(|&p| p as f32 / 255.0).collect()))
        .collect();
    draw(&tiles, ds.channels, ds.height, ds.width, cols, scale)
}

/// Draws the images of a batch (e.g. augmented), undoing `normalize` first if given;
/// values are clamped to [0, 1].
pub fn batch_grid(batch: &Batch, normalize: Option<&Normalize>, cols: usize, scale: u32) -> RgbImage {
    let [n, c, h, w] = batch.shape;
    let per = c * h * w;
    let tiles: Vec<Option<Vec<f32>>> = (0..n)
        .map(|i| {
            let mut img = batch.images.get(i * per..(i + 1) * per)?.to_vec();
            if let Some(norm) = normalize {
                denormalize(&mut img, c, norm);
            }
            Some(img)
        })
        .collect();
    draw(&tiles, c, h, w, cols, scale)
}

/// Lays out CHW tiles with values in [0, 1].
fn draw(tiles: &[Option<Vec<f32>>], channels: usize, h: usize, w: usize, cols: usize, scale: u32) -> RgbImage {
    let cols = cols.max(1).min(tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols).max(1);
    let scale = scale.max(1);
    let (tw, th) = (w as u32 * scale, h as u32 * scale);
    let width = cols as u32 * (tw + GAP) + GAP;
    let height = rows as u32 * (th + GAP) + GAP;
    let mut out = RgbImage::from_pixel(width, height, BACKGROUND);
    let plane = h * w;
    let to_byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    for (t, tile) in tiles.iter().enumerate() {
        let Some(img) = tile else { continue };
        let (x0, y0) = (GAP + (t % cols) as u32 * (tw + GAP), GAP + (t / cols) as u32 * (th + GAP));
        for y in 0..h {
            for x in 0..w {
                let at = |c: usize| img.get(c * plane + y * w + x).copied().unwrap_or(0.0);
                // Three channels are RGB; anything else shows its first channel in gray.
                let px = if channels == 3 {
                    Rgb([to_byte(at(0)), to_byte(at(1)), to_byte(at(2))])
                } else {
                    let g = to_byte(at(0));
                    Rgb([g, g, g])
                };
                for dy in 0..scale {
                    for dx in 0..scale {
                        out.put_pixel(x0 + x as u32 * scale + dx, y0 + y as u32 * scale + dy, px);
                    }
                }
            }
        }
    }
    out
}
