//! `sph eval` and `sph models`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use datasets::{Batching, Loader, Split};
use engine::checkpoint;
use models::ModelConfig;

use crate::data::{input_pipeline, load_split, parse_dataset};
use crate::recipe::{model_config, Settings};
use crate::run_state::read_meta;
use crate::train::EVAL_BATCH;
use crate::trainer::evaluate;

/// Flags of `sph eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `sph train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Data set to evaluate on (default: the one the model was trained on).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Data directory (default: $SPH_DATA or data/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Worker threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `sph eval`.
pub fn run_eval(args: EvalArgs) -> Result<()> {
    let ckpt = checkpoint::load(&args.checkpoint)?;
    let s: Settings = read_meta(&args.checkpoint, &ckpt, "settings")?;
    let name = parse_dataset(args.dataset.as_deref().unwrap_or(&s.dataset))?;
    let data_dir = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    let test_set = load_split(name, &data_dir, Split::Test, args.test_limit)?;
    let mut model = models::build(&s.model, &model_config(&s, test_set.num_classes)?)?;
    checkpoint::restore_store(&args.checkpoint, &ckpt, model.params_mut())?;
    let (_, test_aug, norm) = input_pipeline(&model, &test_set, name, false)?;
    let loader = Loader::new(&test_set, Batching::in_order(EVAL_BATCH).augment(test_aug).normalize(Some(norm)))?;
    let eval = evaluate(&mut model, &loader)?;
    println!(
        "{} on {} test ({} images): loss {:.4}, accuracy {:.2}%",
        s.model,
        name,
        test_set.len,
        eval.loss,
        100.0 * eval.acc
    );
    println!("confusion matrix (rows: true class, columns: predicted):");
    let names = &test_set.class_names;
    let width = names.iter().map(|n| n.len()).max().unwrap_or(5).clamp(5, 14);
    for (c, row) in eval.confusion.iter().enumerate() {
        let label = names.get(c).map(String::as_str).unwrap_or("?");
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>5}")).collect();
        println!("{label:>width$} {}", cells.join(""));
    }
    Ok(())
}

/// `sph models`.
pub fn run_models() -> Result<()> {
    println!("{:<22} {:>12}  {:<9}  description", "name", "parameters", "input");
    for &name in models::names() {
        // The toy task has two classes; everything else is listed with ten.
        let classes = if name.ends_with("toy") { 2 } else { 10 };
        let model = models::build(name, &ModelConfig { classes, ..ModelConfig::default() })?;
        let [c, h, w] = model.input_shape();
        println!(
            "{name:<22} {:>12}  {:<9}  {}",
            model.params().num_learnable(),
            format!("{c}x{h}x{w}"),
            models::describe(name).unwrap_or("")
        );
    }
    Ok(())
}
