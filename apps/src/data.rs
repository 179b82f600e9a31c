//! Data sets as the commands use them: names, splits cut to a limit, the input pipeline a
//! model needs, and `sph data fetch|show`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use datasets::{Augment, Batching, Dataset, DatasetName, Loader, Normalize, Split};
use models::Model;

use crate::files;
use crate::plot;

/// A data set name from the command line, or an error listing the valid ones.
pub fn parse_dataset(name: &str) -> Result<DatasetName> {
    name.parse::<DatasetName>()
        .map_err(|_| anyhow!("unknown data set '{name}' (valid: {})", datasets::NAMES.join(", ")))
}

/// Training and test loaders' augmentation: the model's input size decides a resize
/// (F-MNIST 28 -> 32 for the one-channel VGG); the channels must match.
pub fn input_pipeline(
    model: &Model,
    ds: &Dataset,
    name: DatasetName,
    augment: bool,
) -> Result<(Augment, Augment, Normalize)> {
    let [c, h, w] = model.input_shape();
    if c != ds.channels || h != w || (h != ds.height && !(ds.height == 28 && h == 32)) {
        bail!(
            "model '{}' expects {c}x{h}x{w} input but {} images are {}x{}x{} (pick a model for this data set; see `sph models`)",
            model.name(),
            name,
            ds.channels,
            ds.height,
            ds.width
        );
    }
    let resize = (h != ds.height).then_some(h);
    let mut train = if augment { datasets::paper_augment(name) } else { Augment::default() };
    train.resize_to = resize;
    let test = Augment { resize_to: resize, ..Augment::default() };
    Ok((train, test, datasets::paper_normalize(name)))
}

/// Seed of every `--train-limit`/`--test-limit` subset: the same images for every run, so that
/// runs (and the networks an analysis compares) differ only in what they are meant to.
pub const SUBSET_SEED: u64 = 0;

/// How a limited split is drawn, for config.json.
pub const SUBSET_RULE: &str =
    "class-stratified: each class keeps its share, drawn from a shuffle seeded by subset_seed";

/// One split of a data set, cut to a class-stratified sample of `limit` images when a limit is
/// given (the first N records of a file sorted by class would hold a few classes only). Warns
/// on stderr when the records look sorted by class.
pub fn load_split(name: DatasetName, dir: &Path, split: Split, limit: Option<usize>) -> Result<Dataset> {
    let ds = datasets::load(name, dir, split)?;
    if ds.looks_sorted_by_class() {
        eprintln!(
            "warning: the {name} {} records in {} look sorted by class; limits take class-stratified samples, and training shuffles",
            if split == Split::Train { "training" } else { "test" },
            dir.join(name.dir_name()).display()
        );
    }
    Ok(match limit {
        Some(n) if n < ds.len => ds.stratified(n, SUBSET_SEED),
        _ => ds,
    })
}

/// Writes the record indices of the class-stratified sample of `limit` images that
/// [`load_split`] draws from `dataset`'s `split` into `dir/DATASET-SPLIT-N.txt` (one index per
/// line), for the PyTorch twins to train on the same images; `None` without a limit.
pub fn write_subset_listing(
    dataset: &str,
    split: Split,
    limit: Option<usize>,
    data_dir: &Path,
    dir: &Path,
) -> Result<Option<String>> {
    let Some(n) = limit else { return Ok(None) };
    let name = format!("{dataset}-{}-{n}.txt", if split == Split::Train { "train" } else { "test" });
    let path = dir.join(&name);
    if !path.exists() {
        let ds = datasets::load(parse_dataset(dataset)?, data_dir, split)?;
        let body: String = ds.stratified_indices(n, SUBSET_SEED).iter().map(|i| format!("{i}\n")).collect();
        std::fs::create_dir_all(dir)?;
        crate::files::write_atomic(&path, &body)?;
    }
    Ok(Some(name))
}

/// `sph data fetch`.
pub fn run_fetch(name: &str, dir: Option<PathBuf>) -> Result<()> {
    let name = parse_dataset(name)?;
    let dir = dir.unwrap_or_else(datasets::default_data_dir);
    datasets::fetch(name, &dir)?;
    println!("{name}: verified in {}", dir.join(name.dir_name()).display());
    Ok(())
}

/// `sph data show`.
pub fn run_show(
    name: &str,
    split: &str,
    count: usize,
    augmented: bool,
    data: Option<PathBuf>,
    out: &Path,
    force: bool,
) -> Result<()> {
    let name = parse_dataset(name)?;
    files::refuse_to_overwrite(&[out.to_path_buf()], force)?;
    let split = match split {
        "train" => Split::Train,
        "test" => Split::Test,
        other => bail!("--split: expected train or test, found '{other}'"),
    };
    if count == 0 {
        bail!("--count: expected at least 1, found 0");
    }
    let ds = load_split(name, &data.unwrap_or_else(datasets::default_data_dir), split, None)?;
    // A stratified sample, so that a grid of a class-sorted file still shows every class.
    let indices = ds.stratified_indices(count.min(ds.len), SUBSET_SEED);
    let cols = (indices.len() as f64).sqrt().ceil() as usize;
    let img = if augmented {
        let norm = datasets::paper_normalize(name);
        let loader = Loader::new(
            &ds,
            Batching::in_order(count).augment(datasets::paper_augment(name)).normalize(Some(norm.clone())),
        )?;
        datasets::batch_grid(&loader.make_batch(0, &indices), Some(&norm), cols, 3)
    } else {
        datasets::sample_grid(&ds, &indices, cols, 3)
    };
    plot::save_png(out, &img)?;
    println!("wrote {} ({} samples, {cols} per row); classes in grid order:", out.display(), indices.len());
    for row in indices.chunks(cols) {
        let names: Vec<&str> =
            row.iter().map(|&i| ds.class_names.get(ds.labels[i] as usize).map(String::as_str).unwrap_or("?")).collect();
        println!("  {}", names.join(", "));
    }
    Ok(())
}
