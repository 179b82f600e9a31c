//! A data set in memory, and loading one from its folder.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{cifar, idx, source, DataError};

/// The names `DatasetName::from_str` accepts, for help and error messages.
pub const NAMES: &[&str] = &["mnist", "fashion-mnist", "cifar10", "cifar100", "cifar100-coarse"];

/// Which part of a data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training images (60,000 for MNIST, 50,000 for CIFAR).
    Train,
    /// The test images (10,000).
    Test,
}

impl FromStr for Split {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Split, DataError> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(DataError::InvalidArgument { field: "split", expected: "train or test".into(), found: s.into() }),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// The data sets this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// Handwritten digits, 28x28 gray.
    Mnist,
    /// Zalando clothing pictures, 28x28 gray, same file format as MNIST.
    FashionMnist,
    /// 32x32 color pictures in 10 classes.
    Cifar10,
    /// CIFAR-100 with its 100 fine labels.
    Cifar100Fine,
    /// CIFAR-100 with its 20 coarse labels (superclasses).
    Cifar100Coarse,
}

impl DatasetName {
    /// Every data set, in the order of [`NAMES`].
    pub const ALL: [DatasetName; 5] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100Fine,
        DatasetName::Cifar100Coarse,
    ];

    /// The name used on the command line ("mnist", "cifar100-coarse", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100Fine => "cifar100",
            DatasetName::Cifar100Coarse => "cifar100-coarse",
        }
    }

    /// The folder under the data directory that holds the files.
    pub fn dir_name(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar-10-batches-bin",
            DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => "cifar-100-binary",
        }
    }

    /// The name the fetch commands take (both CIFAR-100 label kinds share one download).
    pub fn fetch_name(self) -> &'static str {
        match self {
            DatasetName::Cifar100Coarse => "cifar100",
            other => other.as_str(),
        }
    }

    /// Number of classes.
    pub fn num_classes(self) -> usize {
        match self {
            DatasetName::Cifar100Fine => 100,
            DatasetName::Cifar100Coarse => 20,
            _ => 10,
        }
    }

    /// (channels, height, width) of the images.
    pub fn image_shape(self) -> (usize, usize, usize) {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => (1, 28, 28),
            _ => (3, 32, 32),
        }
    }

    /// One line telling how to get this data set onto the machine.
    pub fn fetch_hint(self) -> String {
        let name = self.fetch_name();
        match self {
            DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => format!(
                "run `sph data fetch {name}` (needs internet; scripts/fetch-data.sh does not cover CIFAR-100, \
                 so without internet copy cifar-100-binary/ there by hand)"
            ),
            _ => format!("run `scripts/fetch-data.sh {name}` (package registries only) or `sph data fetch {name}`"),
        }
    }
}

impl FromStr for DatasetName {
    type Err = DataError;

    fn from_str(s: &str) -> Result<DatasetName, DataError> {
        let lower = s.trim().to_ascii_lowercase().replace('_', "-");
        match lower.as_str() {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" | "fashionmnist" | "fmnist" | "f-mnist" => Ok(DatasetName::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetName::Cifar10),
            "cifar100" | "cifar-100" | "cifar100-fine" => Ok(DatasetName::Cifar100Fine),
            "cifar100-coarse" | "cifar-100-coarse" => Ok(DatasetName::Cifar100Coarse),
            _ => Err(DataError::UnknownName { found: s.to_string() }),
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The data directory: `$SPH_DATA` if set, else `data` (relative to the working directory).
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("SPH_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("data"),
    }
}

/// Images and labels of one split, in memory as plain bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The data set's name, e.g. "cifar10".
    pub name: String,
    /// `len * channels * height * width` pixels, NCHW.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
    /// Number of images.
    pub len: usize,
    /// Channels per image (1 or 3).
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// A name per class, indexed by label.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Bytes per image (`channels * height * width`).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i` (CHW). Panics if `i >= len`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order (indices past the end are skipped).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let keep: Vec<usize> = indices.iter().copied().filter(|&i| i < self.len).collect();
        let mut images = Vec::with_capacity(keep.len() * self.image_len());
        let mut labels = Vec::with_capacity(keep.len());
        for &i in &keep {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            images,
            labels,
            len: keep.len(),
            class_names: self.class_names.clone(),
            name: self.name.clone(),
            ..*self
        }
    }

    /// The first `n` images (all of them if `n >= len`). On a file sorted by class this is a
    /// few classes only: prefer [`Dataset::stratified`] for subsets that mean something.
    pub fn limit(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len)).collect();
        self.subset(&idx)
    }

    /// Indices (ascending) of a class-stratified sample of `n` images: each class keeps its
    /// share of `n` (largest remainders round, lower labels first on ties), drawn from a
    /// shuffle of that class seeded by `seed`. The same `seed` gives the same sample.
    pub fn stratified_indices(&self, n: usize, seed: u64) -> Vec<usize> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        if n >= self.len {
            return (0..self.len).collect();
        }
        let classes = self.num_classes.max(1 + self.labels.iter().copied().max().unwrap_or(0) as usize);
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (i, &l) in self.labels.iter().enumerate() {
            members[l as usize].push(i);
        }
        // Quotas: floor of each class's share, then one more for the largest remainders.
        let mut quota: Vec<usize> = members.iter().map(|m| m.len() * n / self.len).collect();
        let mut by_remainder: Vec<usize> = (0..classes).collect();
        by_remainder.sort_by_key(|&c| std::cmp::Reverse((members[c].len() * n) % self.len));
        let missing = n - quota.iter().sum::<usize>();
        let topped: Vec<usize> =
            by_remainder.into_iter().filter(|&c| quota[c] < members[c].len()).take(missing).collect();
        for c in topped {
            quota[c] += 1;
        }
        let mut picked = Vec::with_capacity(n);
        for (c, m) in members.iter_mut().enumerate() {
            let mut rng = rand::rngs::StdRng::seed_from_u64(crate::loader::mix(seed, c as u64));
            m.shuffle(&mut rng);
            picked.extend_from_slice(&m[..quota[c]]);
        }
        picked.sort_unstable();
        picked
    }

    /// A class-stratified sample of `n` images (see [`Dataset::stratified_indices`]).
    pub fn stratified(&self, n: usize, seed: u64) -> Dataset {
        self.subset(&self.stratified_indices(n, seed))
    }

    /// Whether the records look sorted by class: fewer label changes from one record to the
    /// next than a tenth of the records (a shuffled file changes label at almost every record).
    pub fn looks_sorted_by_class(&self) -> bool {
        let changes = self.labels.windows(2).filter(|w| w[0] != w[1]).count();
        self.len >= 100 && self.num_classes > 1 && changes < self.len / 10
    }

    /// Number of images per class (index = label).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Loads one split of a data set from `dir` (the data directory, e.g. `data/`).
///
/// Checks structure only (header, record sizes, counts, label ranges); use
/// [`crate::verify`] to compare md5s with the published ones.
pub fn load(name: DatasetName, dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let folder = dir.join(name.dir_name());
    if !folder.is_dir() {
        return Err(DataError::Missing { path: folder, hint: name.fetch_hint() });
    }
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => load_idx(name, &folder, split),
        DatasetName::Cifar10 => load_cifar10(&folder, split),
        DatasetName::Cifar100Fine | DatasetName::Cifar100Coarse => load_cifar100(name, &folder, split),
    }
}

/// Finds `folder/base` or `folder/base.gz`, or says how to fetch it.
fn find(name: DatasetName, folder: &Path, base: &str) -> Result<PathBuf, DataError> {
    source::raw_or_gz(folder, base)
        .ok_or_else(|| DataError::Missing { path: folder.join(base), hint: name.fetch_hint() })
}

fn load_idx(name: DatasetName, folder: &Path, split: Split) -> Result<Dataset, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path = find(name, folder, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(name, folder, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (images, labels) = idx::read_pair(&images_path, &labels_path, 10)?;
    let class_names = match name {
        DatasetName::FashionMnist => FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        _ => (0..10).map(|d| d.to_string()).collect(),
    };
    Ok(Dataset {
        name: name.as_str().to_string(),
        len: images.count,
        channels: 1,
        height: images.rows,
        width: images.cols,
        images: images.pixels,
        labels,
        num_classes: 10,
        class_names,
    })
}

fn load_cifar10(folder: &Path, split: Split) -> Result<Dataset, DataError> {
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    };
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        let path = folder.join(f);
        if !path.is_file() {
            return Err(DataError::Missing { path, hint: DatasetName::Cifar10.fetch_hint() });
        }
        let rec = cifar::read_cifar10(&path)?;
        images.extend_from_slice(&rec.pixels);
        labels.extend_from_slice(&rec.labels);
    }
    let class_names = class_names(&folder.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
    Ok(Dataset {
        name: DatasetName::Cifar10.as_str().to_string(),
        len: labels.len(),
        images,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
        class_names,
    })
}

fn load_cifar100(name: DatasetName, folder: &Path, split: Split) -> Result<Dataset, DataError> {
    let path = folder.join(match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    });
    if !path.is_file() {
        return Err(DataError::Missing { path, hint: name.fetch_hint() });
    }
    let rec = cifar::read_cifar100(&path)?;
    let (labels, class_names) = if name == DatasetName::Cifar100Coarse {
        (rec.coarse, class_names(&folder.join("coarse_label_names.txt"), &CIFAR100_COARSE_CLASSES)?)
    } else {
        (rec.labels, class_names(&folder.join("fine_label_names.txt"), &CIFAR100_FINE_CLASSES)?)
    };
    Ok(Dataset {
        name: name.as_str().to_string(),
        len: labels.len(),
        images: rec.pixels,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        num_classes: name.num_classes(),
        class_names,
    })
}

/// Reads one class name per non-empty line of `path`, or returns `defaults` if the file is
/// absent; a file with the wrong number of names is an error rather than a silent mismatch.
fn class_names(path: &Path, defaults: &[&str]) -> Result<Vec<String>, DataError> {
    if !path.is_file() {
        return Ok(defaults.iter().map(|s| s.to_string()).collect());
    }
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != defaults.len() {
        return Err(DataError::ClassNames { path: path.to_path_buf(), expected: defaults.len(), found: names.len() });
    }
    Ok(names)
}

/// Fashion-MNIST class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// CIFAR-10 class names, by label (as in batches.meta.txt).
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// CIFAR-100 superclass names, by coarse label (as in coarse_label_names.txt).
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// CIFAR-100 class names, by fine label (as in fine_label_names.txt).
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];
