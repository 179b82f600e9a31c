//! Geometry the figures draw with: the zero level set of a sampled function (marching
//! squares), a line clipped to a box, and an orthographic camera for 3-D views.

/// Segments of the zero level set of a function sampled on the nodes of an (nx+1) x (ny+1)
/// grid (`values[j * (nx + 1) + i]` at (x0 + i dx, y0 + j dy)), by marching squares: on every
/// cell edge whose ends differ in sign the crossing is interpolated linearly, and a cell's
/// crossings are joined in pairs.
pub fn zero_contour(
    values: &[f64],
    nx: usize,
    ny: usize,
    origin: (f64, f64),
    step: (f64, f64),
) -> Vec<[(f64, f64); 2]> {
    let at =
        |i: usize, j: usize| ((origin.0 + i as f64 * step.0, origin.1 + j as f64 * step.1), values[j * (nx + 1) + i]);
    let mut segments = Vec::new();
    for j in 0..ny {
        for i in 0..nx {
            // Corners counter-clockwise; edge e joins corner e and e + 1.
            let corners = [at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1)];
            let mut crossings = Vec::with_capacity(4);
            for e in 0..4 {
                let ((pa, a), (pb, b)) = (corners[e], corners[(e + 1) % 4]);
                if (a > 0.0) != (b > 0.0) {
                    let t = a / (a - b);
                    crossings.push((pa.0 + t * (pb.0 - pa.0), pa.1 + t * (pb.1 - pa.1)));
                }
            }
            // Two crossings: one segment; four (a saddle): two, either pairing is a valid contour.
            for pair in crossings.chunks_exact(2) {
                segments.push([pair[0], pair[1]]);
            }
        }
    }
    segments
}

/// The part of the line a x + b y + c = 0 inside the box, or `None` when it misses it.
pub fn clip_line(a: f64, b: f64, c: f64, x: (f64, f64), y: (f64, f64)) -> Option<[(f64, f64); 2]> {
    let mut hits: Vec<(f64, f64)> = Vec::new();
    let tol = 1e-9 * ((x.1 - x.0) + (y.1 - y.0));
    if b.abs() > f64::EPSILON {
        for xv in [x.0, x.1] {
            let yv = -(a * xv + c) / b;
            if yv >= y.0 - tol && yv <= y.1 + tol {
                hits.push((xv, yv));
            }
        }
    }
    if a.abs() > f64::EPSILON {
        for yv in [y.0, y.1] {
            let xv = -(b * yv + c) / a;
            if xv >= x.0 - tol && xv <= x.1 + tol {
                hits.push((xv, yv));
            }
        }
    }
    // A line through a corner hits two edges there; keep the two hits farthest apart.
    let mut best: Option<([(f64, f64); 2], f64)> = None;
    for (i, &p) in hits.iter().enumerate() {
        for &q in &hits[i + 1..] {
            let d = (p.0 - q.0).hypot(p.1 - q.1);
            if d > tol && best.is_none_or(|(_, bd)| d > bd) {
                best = Some(([p, q], d));
            }
        }
    }
    best.map(|(seg, _)| seg)
}

/// An orthographic camera: `project(p)` gives screen coordinates (u, v) and the depth
/// along the viewing direction (larger = nearer the viewer).
#[derive(Clone, Copy, Debug)]
pub(super) struct Camera {
    pub(super) right: [f64; 3],
    pub(super) up: [f64; 3],
    pub(super) toward_viewer: [f64; 3],
}

impl Camera {
    /// The camera at azimuth `az` (from the x axis towards y) and elevation `el` (towards z), in degrees.
    pub(super) fn new(az: f64, el: f64) -> Camera {
        let (a, e) = (az.to_radians(), el.to_radians());
        Camera {
            right: [-a.sin(), a.cos(), 0.0],
            up: [-e.sin() * a.cos(), -e.sin() * a.sin(), e.cos()],
            toward_viewer: [e.cos() * a.cos(), e.cos() * a.sin(), e.sin()],
        }
    }

    /// (u, v, depth) of a point.
    pub(super) fn project(&self, p: [f64; 3]) -> (f64, f64, f64) {
        let dot = |q: [f64; 3]| p[0] * q[0] + p[1] * q[1] + p[2] * q[2];
        (dot(self.right), dot(self.up), dot(self.toward_viewer))
    }
}

/// `len` times the k-th unit vector.
pub(super) fn unit(k: usize, len: f64) -> [f64; 3] {
    let mut v = [0.0; 3];
    v[k] = len;
    v
}

/// The sum of two 3-vectors.
pub(super) fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
