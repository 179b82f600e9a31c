//! The standalone image transforms and the paper presets.

use datasets::{
    denormalize, hflip, normalize, paper_augment, paper_normalize, random_crop, resize_bilinear, rotate, shift,
    to_unit, DatasetName, ImageShape, Normalize,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A 3-channel 6x5 image whose values are all distinct and non-zero.
fn sample() -> (Vec<f32>, ImageShape) {
    let shape = ImageShape::new(3, 6, 5);
    ((0..shape.len()).map(|i| 1.0 + i as f32).collect(), shape)
}

#[test]
fn shift_moves_content_and_fills_zeros() {
    let (img, shape) = sample();
    let out = shift(&img, shape, 1, -2);
    assert_eq!(out.len(), img.len());
    for c in 0..3 {
        for y in 0..6isize {
            for x in 0..5isize {
                let (sy, sx) = (y + 1, x - 2);
                let expected = if (0..6).contains(&sy) && (0..5).contains(&sx) {
                    img[c * 30 + (sy * 5 + sx) as usize]
                } else {
                    0.0
                };
                assert_eq!(out[c * 30 + (y * 5 + x) as usize], expected, "c{c} y{y} x{x}");
            }
        }
    }
    assert!(shift(&img, shape, 6, 0).iter().all(|&v| v == 0.0), "shifted entirely out");
    assert_eq!(shift(&img, shape, 0, 0), img);
}

#[test]
fn random_crop_keeps_shape_and_only_moves_content() {
    let (img, shape) = sample();
    let mut rng = StdRng::seed_from_u64(3);
    let mut moved = 0;
    for _ in 0..50 {
        let out = random_crop(&img, shape, 2, &mut rng);
        assert_eq!(out.len(), img.len(), "shape kept");
        // Every non-zero value is an input value, at most 2 pixels away, in its own channel:
        // content was moved, not created or blended.
        let mut offsets = std::collections::HashSet::new();
        for (i, &v) in out.iter().enumerate() {
            if v == 0.0 {
                continue;
            }
            let src = img.iter().position(|&u| u == v).expect("value comes from the input");
            assert_eq!(src / 30, i / 30, "same channel");
            let (sy, sx) = ((src % 30) / 5, src % 5);
            let (y, x) = ((i % 30) / 5, i % 5);
            assert!(sy.abs_diff(y) <= 2 && sx.abs_diff(x) <= 2);
            offsets.insert((sy as isize - y as isize, sx as isize - x as isize));
        }
        assert_eq!(offsets.len(), 1, "all pixels of one crop move by the same offset");
        if out != img {
            moved += 1;
        }
    }
    assert!(moved > 30, "the crop position is random ({moved}/50 moved)");
    // u8 images work too.
    let bytes: Vec<u8> = (1..=30).collect();
    let out = random_crop(&bytes, ImageShape::new(1, 6, 5), 0, &mut rng);
    assert_eq!(out, bytes, "padding 0 is the identity");
}

#[test]
fn hflip_mirrors_and_twice_is_identity() {
    let (img, shape) = sample();
    let once = hflip(&img, shape);
    assert_ne!(once, img);
    assert_eq!(&once[0..5], &[5.0, 4.0, 3.0, 2.0, 1.0]);
    assert_eq!(hflip(&once, shape), img);
    let bytes: Vec<u8> = (0..30).collect();
    assert_eq!(hflip(&hflip(&bytes, ImageShape::new(1, 6, 5)), ImageShape::new(1, 6, 5)), bytes);
}

#[test]
fn rotate_by_zero_is_identity_and_by_90_turns_the_image() {
    let (img, shape) = sample();
    assert_eq!(rotate(&img, shape, 0.0), img);
    // A square image turned by 90 degrees four times comes back (within rounding).
    let sq = ImageShape::new(1, 4, 4);
    let img: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let quarter = rotate(&img, sq, 90.0);
    // Counter-clockwise: the top-right corner moves to the top-left, the top-left to the bottom-left.
    assert!((quarter[0] - 3.0).abs() < 1e-4, "{quarter:?}");
    assert!((quarter[12] - 0.0).abs() < 1e-4, "{quarter:?}");
    let mut back = img.clone();
    for _ in 0..4 {
        back = rotate(&back, sq, 90.0);
    }
    for (a, b) in back.iter().zip(&img) {
        assert!((a - b).abs() < 1e-3, "{back:?}");
    }
    // 45 degrees pushes the corners out: they are filled with zeros.
    let ones = vec![1.0; 64];
    let r = rotate(&ones, ImageShape::new(1, 8, 8), 45.0);
    assert_eq!(r[0], 0.0);
    assert!((r[3 * 8 + 3] - 1.0).abs() < 1e-6, "the center stays");
}

#[test]
fn resize_bilinear_changes_size_and_keeps_constants() {
    let shape = ImageShape::new(2, 28, 28);
    let img: Vec<f32> = (0..shape.len()).map(|i| if i < 784 { 0.25 } else { 0.75 }).collect();
    let out = resize_bilinear(&img, shape, 32, 32);
    assert_eq!(out.len(), 2 * 32 * 32);
    assert!(out[..1024].iter().all(|&v| (v - 0.25).abs() < 1e-6));
    assert!(out[1024..].iter().all(|&v| (v - 0.75).abs() < 1e-6));
    // Same size: identity. A horizontal ramp stays monotone after upsampling.
    let ramp: Vec<f32> = (0..28 * 28).map(|i| (i % 28) as f32).collect();
    let one = ImageShape::new(1, 28, 28);
    assert_eq!(resize_bilinear(&ramp, one, 28, 28), ramp);
    let up = resize_bilinear(&ramp, one, 32, 32);
    assert!(up[..32].windows(2).all(|w| w[0] <= w[1]));
    assert_eq!((up[0], up[31]), (0.0, 27.0), "edges clamp to the border pixels");
}

#[test]
fn normalize_then_denormalize_is_identity() {
    let (mut img, shape) = sample();
    for v in img.iter_mut() {
        *v /= 90.0;
    }
    let orig = img.clone();
    let norm = Normalize { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] };
    normalize(&mut img, shape.channels, &norm);
    assert!((img[0] - (orig[0] - 0.485) / 0.229).abs() < 1e-6);
    assert!((img[30] - (orig[30] - 0.456) / 0.224).abs() < 1e-6, "second plane uses the second mean");
    denormalize(&mut img, shape.channels, &norm);
    for (a, b) in img.iter().zip(&orig) {
        assert!((a - b).abs() < 1e-6);
    }
    // One value broadcasts to all channels.
    let mut gray = vec![0.286f32; 4];
    normalize(&mut gray, 1, &Normalize { mean: vec![0.286], std: vec![0.353] });
    assert!(gray.iter().all(|v| v.abs() < 1e-7));
    assert!(Normalize { mean: vec![0.1, 0.2], std: vec![1.0, 1.0] }.check(3).is_err());
    assert!(Normalize { mean: vec![0.1], std: vec![0.0] }.check(1).is_err());
}

#[test]
fn to_unit_maps_bytes_into_zero_one() {
    assert_eq!(to_unit(&[0, 255]), vec![0.0, 1.0]);
}

#[test]
fn paper_presets_follow_the_paper() {
    let c10 = paper_augment(DatasetName::Cifar10);
    assert_eq!((c10.crop_padding, c10.hflip, c10.rotate_degrees, c10.resize_to), (Some(4), true, None, None));
    assert_eq!(paper_normalize(DatasetName::Cifar10).mean, [0.485, 0.456, 0.406]);
    assert_eq!(paper_normalize(DatasetName::Cifar10).std, [0.229, 0.224, 0.225]);
    let c100 = paper_augment(DatasetName::Cifar100Coarse);
    assert_eq!((c100.crop_padding, c100.hflip, c100.rotate_degrees), (Some(4), true, Some(15.0)));
    assert_eq!(paper_normalize(DatasetName::Cifar100Fine).mean, [0.5071, 0.4865, 0.4409]);
    let f = paper_augment(DatasetName::FashionMnist);
    assert_eq!((f.resize_to, f.crop_padding, f.hflip), (Some(32), Some(4), true));
    assert_eq!(paper_normalize(DatasetName::FashionMnist), Normalize { mean: vec![0.286], std: vec![0.353] });
    assert_eq!(paper_augment(DatasetName::Mnist), Default::default());
    assert_eq!(paper_normalize(DatasetName::Mnist), Normalize { mean: vec![0.0], std: vec![1.0] });
}
