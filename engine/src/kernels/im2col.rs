//! im2col / col2im: turn a convolution into one matrix product per image.

/// Geometry of a 2-D convolution or pooling window over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Stride, the same along both axes.
    pub stride: usize,
    /// Zero padding, the same on every side.
    pub padding: usize,
}

impl Window {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel_h) / self.stride + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel_w) / self.stride + 1
    }
    /// Rows of the column matrix: channels * kernel_h * kernel_w.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }
    /// Columns of the column matrix: one per output pixel.
    pub fn col_cols(&self) -> usize {
        self.out_h() * self.out_w()
    }
    /// For kernel offset `k` along an axis: output positions whose input index
    /// `o * stride + k - padding` lies inside `0..size`, as a half-open range.
    fn valid_range(&self, k: usize, size: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.padding);
        // First o with o*s + k >= p.
        let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
        // Last o with o*s + k - p < size.
        let hi = if size + p > k { ((size + p - k - 1) / s + 1).min(out) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// Copies image `x` [C, H, W] into `col` [C*kh*kw, Ho*Wo] (zeros where the window overhangs).
/// Row r of the column matrix starts at `col[r * ld]` (`ld >= Ho*Wo`), so several images can
/// sit side by side in one wide matrix.
pub fn im2col(x: &[f32], g: &Window, col: &mut [f32], ld: usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &x[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ki in 0..g.kernel_h {
            let (y0, y1) = g.valid_range(ki, g.height, oh);
            for kj in 0..g.kernel_w {
                let (x0, x1) = g.valid_range(kj, g.width, ow);
                let dst = &mut col[row * ld..row * ld + oh * ow];
                dst.fill(0.0);
                for oy in y0..y1 {
                    let iy = oy * g.stride + ki - g.padding;
                    let src = &plane[iy * g.width..(iy + 1) * g.width];
                    let out_row = &mut dst[oy * ow..(oy + 1) * ow];
                    if g.stride == 1 {
                        let ix0 = x0 + kj - g.padding;
                        out_row[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
                    } else {
                        for ox in x0..x1 {
                            out_row[ox] = src[ox * g.stride + kj - g.padding];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Adds the column matrix `col` [C*kh*kw, Ho*Wo] (row stride `ld`) back into image `dx`
/// [C, H, W]: the adjoint of im2col.
pub fn col2im_add(col: &[f32], g: &Window, dx: &mut [f32], ld: usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut row = 0;
    for c in 0..g.channels {
        let plane = &mut dx[c * g.height * g.width..(c + 1) * g.height * g.width];
        for ki in 0..g.kernel_h {
            let (y0, y1) = g.valid_range(ki, g.height, oh);
            for kj in 0..g.kernel_w {
                let (x0, x1) = g.valid_range(kj, g.width, ow);
                let src = &col[row * ld..row * ld + oh * ow];
                for oy in y0..y1 {
                    let iy = oy * g.stride + ki - g.padding;
                    let dst = &mut plane[iy * g.width..(iy + 1) * g.width];
                    let in_row = &src[oy * ow..(oy + 1) * ow];
                    if g.stride == 1 {
                        let ix0 = x0 + kj - g.padding;
                        for (d, &s) in dst[ix0..ix0 + (x1 - x0)].iter_mut().zip(&in_row[x0..x1]) {
                            *d += s;
                        }
                    } else {
                        for ox in x0..x1 {
                            dst[ox * g.stride + kj - g.padding] += in_row[ox];
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col written the obvious way, to check the fast one.
    fn naive(x: &[f32], g: &Window) -> Vec<f32> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut col = vec![0.0; g.col_rows() * oh * ow];
        for c in 0..g.channels {
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.stride + ki) as isize - g.padding as isize;
                            let ix = (ox * g.stride + kj) as isize - g.padding as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < g.height && (ix as usize) < g.width {
                                col[row * oh * ow + oy * ow + ox] =
                                    x[(c * g.height + iy as usize) * g.width + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn im2col_matches_naive_and_col2im_is_its_adjoint() {
        for &(c, h, w, k, s, p) in
            &[(2, 5, 6, 3, 1, 1), (3, 7, 7, 3, 2, 1), (1, 8, 8, 5, 1, 2), (2, 6, 5, 2, 2, 0), (1, 4, 4, 5, 1, 2)]
        {
            let g = Window { channels: c, height: h, width: w, kernel_h: k, kernel_w: k, stride: s, padding: p };
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut col = vec![7.0; g.col_rows() * g.col_cols()];
            im2col(&x, &g, &mut col, g.col_cols());
            assert_eq!(col, naive(&x, &g), "{g:?}");
            // <im2col(x), y> == <x, col2im(y)> for any y.
            let y: Vec<f32> = (0..col.len()).map(|i| ((i * 31 % 17) as f32) - 8.0).collect();
            let mut back = vec![0.0; x.len()];
            col2im_add(&y, &g, &mut back, g.col_cols());
            let lhs: f64 = col.iter().zip(&y).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            assert!((lhs - rhs).abs() < 1e-6 * lhs.abs().max(1.0), "{g:?}: {lhs} vs {rhs}");
        }
    }
}
