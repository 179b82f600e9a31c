//! Inputs a careless or hostile user produced: forged counts in gzip IDX files and
//! CIFAR-100 records whose two labels disagree.

mod common;

use common::{gz, TempDir};
use datasets::cifar::FINE_TO_COARSE;
use datasets::idx::{encode_labels, IMAGES_MAGIC};
use datasets::{load, DataError, DatasetName, Split, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES};

/// A gzip images file whose header promises a million 28x28 images (784 MB) but that holds
/// 20 MB (1 MB compressed), beside a labels file for 10 images: the mismatch is in
/// the two headers, so it must be reported before anything is decompressed. (Reading the
/// images body first ends in a truncation error instead, after decompressing 20 MB.)
#[test]
fn a_forged_gzip_count_is_caught_from_the_headers_before_decompressing() {
    let dir = TempDir::new("forged-count");
    let mut images = Vec::new();
    for v in [IMAGES_MAGIC, 1_000_000, 28, 28] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    // 1 MB of noise keeps the file plausible for the zip-bomb guard (1 MB of deflate can
    // hold about 1 GB); 19 MB of zeros cost almost nothing compressed.
    images.extend_from_slice(&common::bytes(1 << 20, 7));
    images.resize(images.len() + (19 << 20), 0);
    dir.write("mnist/train-images-idx3-ubyte.gz", &gz(&images));
    dir.write("mnist/train-labels-idx1-ubyte", &encode_labels(&[1; 10]));
    let err = load(DatasetName::Mnist, &dir.0, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { expected: 10, found: 1_000_000, .. }), "{err}");
    assert!(err.to_string().contains("train-images-idx3-ubyte.gz: header count"), "{err}");
}

/// The fine-to-coarse table: 20 superclasses of 5 classes each, checked by name against
/// the data set's documented superclass list.
#[test]
fn every_superclass_holds_five_fine_classes_and_names_agree() {
    let mut sizes = [0usize; 20];
    for &c in &FINE_TO_COARSE {
        sizes[c as usize] += 1;
    }
    assert_eq!(sizes, [5; 20]);
    let coarse_of = |fine: &str| {
        let i = CIFAR100_FINE_CLASSES.iter().position(|&n| n == fine).unwrap();
        CIFAR100_COARSE_CLASSES[FINE_TO_COARSE[i] as usize]
    };
    for (fine, coarse) in [
        ("apple", "fruit_and_vegetables"),
        ("beaver", "aquatic_mammals"),
        ("aquarium_fish", "fish"),
        ("maple_tree", "trees"),
        ("pickup_truck", "vehicles_1"),
        ("tractor", "vehicles_2"),
        ("worm", "non-insect_invertebrates"),
        ("woman", "people"),
        ("bee", "insects"),
        ("wardrobe", "household_furniture"),
    ] {
        assert_eq!(coarse_of(fine), coarse, "{fine}");
    }
}
