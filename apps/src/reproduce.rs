//! `sph reproduce TABLE --budget smoke|cpu|paper`: the paper's tables and figures as planned
//! sets of runs at a budget stated up front. It prints the plan with an estimated time per run
//! (from a few timed training steps of each model on this machine), skips finished runs,
//! resumes interrupted ones, shows progress with an ETA, and writes `TABLE.md` and `TABLE.csv`
//! beside the runs: ours, the paper's numbers, and PyTorch's where `pytorch.csv` (written by
//! `scripts/reproduce-pytorch.py` for the same plan) is present.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use datasets::{DatasetName, Split};

use crate::analyze::{self, OverlapArgs};
use crate::bench;
use crate::figures;
use crate::files;
use crate::recipe::{self, Settings};
use crate::report::mean_std;
use crate::run_state;

/// Flags of `sph reproduce`.
#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// table1 (retention), table2 (VGG width and depth), dispersion, fig4 (gradient flow) or fig5 (3-D representations).
    pub table: String,
    /// smoke (minutes, for CI), cpu (about 3 hours per table on a 2-core machine) or paper (the paper's recipes).
    #[arg(long, default_value = "smoke")]
    pub budget: String,
    /// Seeds per configuration (default: 1 for smoke and cpu, 3 for paper).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Folder for the runs and the tables (runs are reused: finished ones are loaded, interrupted ones resumed).
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Print the plan with estimated times and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Data directory (default: $SPH_DATA or data/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Worker threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Train only these rows of table1/table2 (1-based, as TABLE.md lists them, e.g. 4,5), to
    /// finish a table across sessions; rows finished earlier in the same --out stay in the table.
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<usize>,
}

/// The tables `sph reproduce` knows.
pub const TABLES: [&str; 5] = ["table1", "table2", "dispersion", "fig4", "fig5"];

/// How much of a paper recipe a budget keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// A minute or two in all: one epoch on stratified subsets, VGGs at an eighth of their width.
    Smoke,
    /// About three hours per table here: FNN and LeNet at the paper's recipe, VGG-11 and CNN-9
    /// on 10,000 stratified images for 12 epochs, Table 2's VGGs on 5,000 for 10, schedules
    /// compressed to those epochs.
    Cpu,
    /// The paper's recipes.
    Paper,
}

impl Budget {
    fn parse(s: &str) -> Result<Budget> {
        Ok(match s {
            "smoke" => Budget::Smoke,
            "cpu" => Budget::Cpu,
            "paper" => Budget::Paper,
            other => bail!("--budget: expected smoke, cpu or paper, found '{other}'"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Budget::Smoke => "smoke",
            Budget::Cpu => "cpu",
            Budget::Paper => "paper",
        }
    }

    /// Applies the budget to a paper recipe `s` of a `family` ("fnn", "lenet", "vgg" (Table 1),
    /// "vgg-table2", "cnn9").
    fn apply(self, s: &mut Settings, family: &str) {
        let (epochs, train, test, width) = match (self, family) {
            (Budget::Paper, _) => return,
            (Budget::Smoke, "vgg" | "vgg-table2") => (1, Some(2000), Some(1000), Some(0.125)),
            (Budget::Smoke, "cnn9") => (1, Some(2000), Some(1000), None),
            (Budget::Smoke, _) => (1, Some(10_000), Some(2000), None),
            // FNN and LeNet are cheap enough for the paper's recipe on all of MNIST.
            (Budget::Cpu, "fnn" | "lenet") => return,
            (Budget::Cpu, "cnn9" | "vgg") => (12, Some(10_000), None, None),
            // Table 2's wide and deep VGGs cost up to 4x a VGG-11: half the images, 10 epochs.
            (Budget::Cpu, _) => (10, Some(5_000), None, None),
        };
        s.schedule = compress_schedule(&s.schedule, s.epochs, epochs);
        s.epochs = epochs;
        s.train_limit = train;
        s.test_limit = test;
        if let Some(w) = width {
            s.width_multiplier = w;
        }
    }
}

/// A schedule of a `total`-epoch recipe moved to `epochs` epochs at the same fractions.
fn compress_schedule(schedule: &str, total: usize, epochs: usize) -> String {
    let parts: Vec<&str> = schedule.split(':').collect();
    match parts.as_slice() {
        ["step", k, gamma] => {
            let every = k.parse::<usize>().unwrap_or(total);
            let milestones: Vec<usize> = (1..).map(|i| i * every).take_while(|&m| m <= total).collect();
            recipe::scaled_milestones(&milestones, total, epochs, gamma.parse().unwrap_or(1.0))
        }
        ["multistep", list, gamma] => {
            let milestones: Vec<usize> = list.split(',').filter_map(|m| m.trim().parse().ok()).collect();
            recipe::scaled_milestones(&milestones, total, epochs, gamma.parse().unwrap_or(1.0))
        }
        _ => schedule.to_string(),
    }
}

/// The paper's test accuracy (%), plain and spherized, as (mean, std).
type PaperPair = [(f64, f64); 2];

/// One row of a table: a network on a data set, plain and spherized.
struct Row {
    /// Label in the table, e.g. "VGG-11 16/32/64/128".
    label: String,
    family: &'static str,
    plain: &'static str,
    spherized: &'static str,
    /// The data set the paper used, and the one that runs here (a stand-in when it is missing).
    paper_dataset: &'static str,
    dataset: &'static str,
    width: Option<Vec<usize>>,
    /// The paper's test accuracy (%), plain and spherized (mean, std).
    paper: Option<PaperPair>,
}

/// One training run of the plan.
struct Run {
    row: usize,
    spherized: bool,
    settings: Settings,
    dir: PathBuf,
}

fn row(
    label: &str,
    family: &'static str,
    models: [&'static str; 2],
    dataset: &'static str,
    paper: [(f64, f64); 2],
) -> Row {
    Row {
        label: label.into(),
        family,
        plain: models[0],
        spherized: models[1],
        paper_dataset: dataset,
        dataset,
        width: None,
        paper: Some(paper),
    }
}

/// The rows of table 1 and 2 (test accuracies from the paper's tables).
fn rows(table: &str) -> Vec<Row> {
    match table {
        "table1" => vec![
            row("SimpleFNN", "fnn", ["simple_fnn", "sph_fnn"], "mnist", [(98.58, 0.03), (98.65, 0.04)]),
            row("LeNet-5", "lenet", ["lenet", "sph_lenet"], "mnist", [(99.10, 0.05), (99.14, 0.04)]),
            row("VGG-11", "vgg", ["vgg11_bn_one", "sph_vgg11_bn_one"], "fashion-mnist", [(94.36, 0.06), (94.34, 0.17)]),
            row("VGG-11", "vgg", ["vgg11_bn", "sph_vgg11_bn"], "cifar10", [(92.38, 0.06), (92.49, 0.11)]),
            row("VGG-11", "vgg", ["vgg11_bn", "sph_vgg11_bn"], "cifar100", [(68.42, 0.12), (69.03, 0.24)]),
        ],
        "table2" => {
            let widths: [(&str, [usize; 4], PaperPair); 5] = [
                ("16/32/64/128", [16, 32, 64, 128], [(60.17, 0.21), (60.40, 0.35)]),
                ("32/64/128/256", [32, 64, 128, 256], [(64.89, 0.38), (65.38, 0.28)]),
                ("64/128/256/512", [64, 128, 256, 512], [(68.42, 0.12), (69.03, 0.24)]),
                ("128/256/512/1024", [128, 256, 512, 1024], [(70.53, 0.35), (70.89, 0.19)]),
                ("256/512/1024/1024", [256, 512, 1024, 1024], [(71.43, 0.22), (71.94, 0.19)]),
            ];
            let mut rows: Vec<Row> = widths
                .iter()
                .map(|(label, w, paper)| Row {
                    width: Some(w.to_vec()),
                    ..row(&format!("VGG-11 {label}"), "vgg-table2", ["vgg11_bn", "sph_vgg11_bn"], "cifar100", *paper)
                })
                .collect();
            rows.push(row(
                "VGG-16 64/128/256/512",
                "vgg-table2",
                ["vgg16_bn", "sph_vgg16_bn"],
                "cifar100",
                [(72.51, 0.26), (72.53, 0.17)],
            ));
            rows.push(row(
                "VGG-19 64/128/256/512",
                "vgg-table2",
                ["vgg19_bn", "sph_vgg19_bn"],
                "cifar100",
                [(71.53, 0.32), (72.17, 0.30)],
            ));
            rows
        }
        _ => Vec::new(),
    }
}

/// Number of classes of a data set name.
fn classes(dataset: &str) -> usize {
    match dataset {
        "cifar100" => 100,
        "cifar100-coarse" => 20,
        _ => 10,
    }
}

/// Data sets this machine lacks run on CIFAR-10 instead; says so once per data set.
fn stand_in(rows: &mut [Row], data_dir: &Path) {
    let mut told = std::collections::BTreeSet::new();
    for r in rows.iter_mut() {
        let Ok(name) = r.dataset.parse::<DatasetName>() else { continue };
        if let Err(e) = datasets::load(name, data_dir, Split::Test) {
            if told.insert(r.dataset) {
                eprintln!("{}: {e}\n  its rows run the same protocol on CIFAR-10 and are labelled so", r.dataset);
            }
            r.dataset = "cifar10";
        }
    }
}

/// The runs of a table at a budget.
fn plan(rows: &[Row], budget: Budget, seeds: usize, out: &Path) -> Vec<Run> {
    let mut runs = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        for (spherized, model) in [(false, r.plain), (true, r.spherized)] {
            for seed in 0..seeds as u64 {
                let mut s = recipe::paper(model, r.paper_dataset);
                s.dataset = r.dataset.to_string();
                s.width = r.width.clone();
                s.seed = seed;
                budget.apply(&mut s, r.family);
                let width = r.width.as_ref().map_or(String::new(), |w| {
                    format!("-w{}", w.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("_"))
                });
                let data = if r.dataset == r.paper_dataset {
                    r.dataset.to_string()
                } else {
                    format!("{}-on-{}", r.paper_dataset, r.dataset)
                };
                let dir = out.join(format!("{data}-{model}{width}-s{seed}"));
                runs.push(Run { row: i, spherized, settings: s, dir });
            }
        }
    }
    runs
}

/// The runs of the 1-based rows `only` (all of them when `only` is empty), and the others.
fn select_rows(runs: Vec<Run>, only: &[usize], row_count: usize, table: &str) -> Result<(Vec<Run>, Vec<Run>)> {
    if let Some(bad) = only.iter().find(|&&r| r == 0 || r > row_count) {
        bail!("--rows: expected row numbers from 1 to {row_count} of {table}, found {bad}");
    }
    Ok(runs.into_iter().partition(|r| only.is_empty() || only.contains(&(r.row + 1))))
}

/// (train %, test %, seconds) of a run that finished earlier, from its metrics.jsonl (the last
/// line of each epoch counts), so that rows trained by earlier `--rows` calls stay in the table.
fn finished_earlier(run: &Run) -> Option<(f64, f64, f64)> {
    let by_epoch: BTreeMap<usize, run_state::EpochMetrics> =
        run_state::logged_metrics(&run.dir).into_iter().map(|m| (m.epoch, m)).collect();
    let epochs = run.settings.epochs;
    if !(1..=epochs).all(|e| by_epoch.contains_key(&e)) {
        return None;
    }
    let last = &by_epoch[&epochs];
    let seconds = (1..=epochs).map(|e| by_epoch[&e].seconds).sum();
    Some((100.0 * last.train_acc, 100.0 * last.test_acc, seconds))
}

/// The runs ordered by their row's estimated cost (a row's runs stay together, in plan order),
/// so that a table cut short holds as many finished rows as its time allowed.
fn cheapest_rows_first(runs: Vec<Run>, estimates: Vec<f64>) -> (Vec<Run>, Vec<f64>) {
    let mut row_cost: BTreeMap<usize, f64> = BTreeMap::new();
    for (run, secs) in runs.iter().zip(&estimates) {
        *row_cost.entry(run.row).or_default() += secs;
    }
    let mut order: Vec<(Run, f64)> = runs.into_iter().zip(estimates).collect();
    // Stable: equal costs keep the plan's order.
    order.sort_by(|a, b| row_cost[&a.0.row].total_cmp(&row_cost[&b.0.row]));
    order.into_iter().unzip()
}

/// Seconds one run should take: its training images at the model's measured step rate, plus
/// the evaluations (a forward pass costs about a third of a training step).
fn estimate(s: &Settings, rate: f64) -> f64 {
    let full = |d: &str, split: Split| match (d, split) {
        ("mnist" | "fashion-mnist", Split::Train) => 60_000,
        (_, Split::Train) => 50_000,
        (_, Split::Test) => 10_000,
    };
    let train = s.train_limit.unwrap_or(full(&s.dataset, Split::Train)).min(full(&s.dataset, Split::Train));
    let test = s.test_limit.unwrap_or(full(&s.dataset, Split::Test)).min(full(&s.dataset, Split::Test));
    s.epochs as f64 * (train as f64 + test as f64 / 3.0) / rate.max(1e-9)
}

fn hms(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{:.0}s", seconds.max(0.0).ceil());
    }
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `sph reproduce`.
pub fn run_reproduce(args: ReproduceArgs) -> Result<()> {
    let budget = Budget::parse(&args.budget)?;
    if !TABLES.contains(&args.table.as_str()) {
        bail!("unknown table '{}' (valid: {})", args.table, TABLES.join(", "));
    }
    let seeds = args.seeds.unwrap_or(if budget == Budget::Paper { 3 } else { 1 });
    if seeds == 0 {
        bail!("--seeds: expected at least 1, found 0");
    }
    let data_dir = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    let out = args.out.join(&args.table).join(budget.name());
    match args.table.as_str() {
        "table1" | "table2" => retention(&args.table, budget, seeds, &args.rows, &data_dir, &out, args.dry_run),
        _ if !args.rows.is_empty() => bail!("--rows: only table1 and table2 have rows, found it with {}", args.table),
        "dispersion" => dispersion(budget, seeds, &data_dir, &out, args.dry_run),
        _ => figure(&args.table, budget, &data_dir, &out, args.dry_run),
    }
}

/// Tables 1 and 2: plain and spherized networks side by side.
fn retention(
    table: &str,
    budget: Budget,
    seeds: usize,
    only_rows: &[usize],
    data_dir: &Path,
    out: &Path,
    dry_run: bool,
) -> Result<()> {
    let mut rows = rows(table);
    stand_in(&mut rows, data_dir);
    let (runs, other_rows) = select_rows(plan(&rows, budget, seeds, out), only_rows, rows.len(), table)?;
    let planned = rows.len() * 2 * seeds;
    // Step rates, measured once per (model, width) with a few steps at the run's batch size.
    let mut rates: BTreeMap<String, f64> = BTreeMap::new();
    let mut estimates = Vec::with_capacity(runs.len());
    for run in &runs {
        let s = &run.settings;
        let key = format!("{} {:?} {}", s.model, s.width, s.width_multiplier);
        if !rates.contains_key(&key) {
            rates.insert(key.clone(), bench::step_rate(s, classes(&s.dataset))?);
        }
        estimates.push(estimate(s, rates[&key]));
    }
    let (runs, estimates) = cheapest_rows_first(runs, estimates);
    println!("{table}, budget {}: {} runs into {}, cheapest rows first", budget.name(), runs.len(), out.display());
    for (run, &secs) in runs.iter().zip(&estimates) {
        let s = &run.settings;
        let done = run_state::logged_metrics(&run.dir).len() >= s.epochs;
        let r = &rows[run.row];
        let data = if r.dataset == r.paper_dataset {
            s.dataset.clone()
        } else {
            format!("{} for {}", s.dataset, r.paper_dataset)
        };
        println!(
            "  {:<44} {:<20} {:>3} epochs x {:>6} images, lr {} {:<22} ~{}{}",
            format!("{} ({})", s.model, r.label),
            data,
            s.epochs,
            s.train_limit.map_or("all".to_string(), |n| n.to_string()),
            s.lr,
            s.schedule,
            hms(secs),
            if done { " (finished)" } else { "" }
        );
    }
    let total: f64 = estimates.iter().sum();
    println!("estimated total: {} at the measured step rates", hms(total));
    if dry_run {
        return Ok(());
    }
    std::fs::create_dir_all(out)?;
    write_plan(&runs, &rows, data_dir, out)?;
    let started = Instant::now();
    let mut results: Vec<_> = other_rows
        .iter()
        .filter_map(|run| finished_earlier(run).map(|(train, test, secs)| (run, train, test, secs)))
        .collect();
    let mut left = total;
    for (i, (run, guess)) in runs.iter().zip(&estimates).enumerate() {
        let s = &run.settings;
        println!(
            "[{}/{}] {} seed {} on {} (elapsed {}, about {} left)",
            i + 1,
            runs.len(),
            s.model,
            s.seed,
            s.dataset,
            hms(started.elapsed().as_secs_f64()),
            hms(left)
        );
        let (_, history) = analyze::train_or_load(s, data_dir, &run.dir)?;
        left -= guess;
        let last = history.last().ok_or_else(|| anyhow::anyhow!("{}: no finished epoch", run.dir.display()))?;
        let seconds = history.iter().map(|m| m.seconds).sum();
        results.push((run, 100.0 * last.train_acc, 100.0 * last.test_acc, seconds));
        // Rewritten after every run, so that a table cut short shows what has finished.
        write_tables(table, budget, &rows, &results, planned, out)?;
    }
    let md = write_tables(table, budget, &rows, &results, planned, out)?;
    println!("\n{md}\nwrote {0}/{table}.md and {0}/{table}.csv", out.display());
    Ok(())
}

/// Writes TABLE.md and TABLE.csv from the runs finished so far (with PyTorch's numbers where
/// `pytorch.csv` has them); a partial table says how many of the `planned` runs it holds.
fn write_tables(
    table: &str,
    budget: Budget,
    rows: &[Row],
    results: &[Outcome],
    planned: usize,
    out: &Path,
) -> Result<String> {
    let pytorch = read_pytorch(&out.join("pytorch.csv"));
    let (mut md, csv) = render(table, budget, rows, results, &pytorch);
    if results.len() < planned {
        md = format!("(partial: {} of {planned} runs finished; the others show -)\n\n{md}", results.len());
    }
    files::write_atomic(&out.join(format!("{table}.md")), &md)?;
    files::write_atomic(&out.join(format!("{table}.csv")), &csv)?;
    Ok(md)
}

/// `plan.json`, what `scripts/reproduce-pytorch.py` reads to train the same runs: each run's
/// settings, its row's width list, and the files listing the images of its subsets
/// (`subsets/DATASET-SPLIT-N.txt`, one record index per line, the same class-stratified sample
/// `sph train` draws).
fn write_plan(runs: &[Run], rows: &[Row], data_dir: &Path, out: &Path) -> Result<()> {
    let subsets = out.join("subsets");
    let subset_file = |dataset: &str, split: Split, limit: Option<usize>| -> Result<Option<String>> {
        let name = crate::data::write_subset_listing(dataset, split, limit, data_dir, &subsets)?;
        Ok(name.map(|n| format!("subsets/{n}")))
    };
    let mut entries = Vec::new();
    for run in runs {
        let s = &run.settings;
        entries.push(serde_json::json!({
            "row": rows[run.row].label,
            "paper_dataset": rows[run.row].paper_dataset,
            "spherized": run.spherized,
            "settings": s,
            "train_subset": subset_file(&s.dataset, Split::Train, s.train_limit)?,
            "test_subset": subset_file(&s.dataset, Split::Test, s.test_limit)?,
        }));
    }
    let plan = serde_json::json!({ "data_dir": data_dir, "runs": entries });
    files::write_atomic(&out.join("plan.json"), &serde_json::to_string_pretty(&plan)?)
}

/// (model, data set, the paper's data set, width list) of a row's runs.
type RunKey = (String, String, String, String);

/// PyTorch's test accuracies (%) of the same plan, from
/// `model,dataset,paper_dataset,width,seed,train_acc,test_acc,seconds` lines.
fn read_pytorch(path: &Path) -> BTreeMap<RunKey, Vec<f64>> {
    let mut by_key: BTreeMap<RunKey, Vec<f64>> = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else { return by_key };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if let [model, data, paper_data, width, _seed, _train, test, ..] = f[..] {
            if let Ok(test) = test.parse::<f64>() {
                by_key.entry((model.into(), data.into(), paper_data.into(), width.into())).or_default().push(test);
            }
        }
    }
    by_key
}

/// A finished run: (run, train accuracy %, test accuracy %, seconds).
type Outcome<'a> = (&'a Run, f64, f64, f64);

/// TABLE.md (one line per row: paper, ours, PyTorch; plain and spherized) and TABLE.csv (one
/// line per run).
fn render(
    table: &str,
    budget: Budget,
    rows: &[Row],
    results: &[Outcome],
    pytorch: &BTreeMap<RunKey, Vec<f64>>,
) -> (String, String) {
    let pm = |v: &[f64]| match v {
        [] => "-".to_string(),
        [one] => format!("{one:.2}"),
        _ => {
            let (m, s) = mean_std(v);
            format!("{m:.2} ± {s:.2}")
        }
    };
    let width_key = |w: &Option<Vec<usize>>| w.as_ref().map_or(String::new(), |w| format!("{w:?}").replace(", ", "/"));
    let mut md = format!(
        "{table} at budget `{}` (test accuracy %, mean ± std over seeds; train accuracy of the last epoch in brackets)\n\n\
         | network | data set | budget used | paper plain | paper spherized | ours plain | ours spherized | gap (sph - plain) | PyTorch plain | PyTorch spherized | compute |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        budget.name()
    );
    let mut csv = String::from(
        "row,network,model,dataset,paper_dataset,spherized,seed,epochs,train_images,train_acc,test_acc,seconds\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let mine: Vec<&Outcome> = results.iter().filter(|x| x.0.row == i).collect();
        let pick = |sph: bool, f: fn(&Outcome) -> f64| -> Vec<f64> {
            mine.iter().filter(|x| x.0.spherized == sph).map(|x| f(x)).collect()
        };
        let (plain, sph) = (pick(false, |x| x.2), pick(true, |x| x.2));
        let (plain_train, sph_train) = (pick(false, |x| x.1), pick(true, |x| x.1));
        let gap = if plain.is_empty() || sph.is_empty() {
            "-".into()
        } else {
            format!("{:+.2}", mean_std(&sph).0 - mean_std(&plain).0)
        };
        let seconds: f64 = mine.iter().map(|x| x.3).sum();
        let data = if r.dataset == r.paper_dataset {
            r.dataset.to_string()
        } else {
            format!("{} (stand-in for {})", r.dataset, r.paper_dataset)
        };
        let used = mine.first().map_or("-".to_string(), |x| {
            let s = &x.0.settings;
            format!(
                "{} ep x {} img{}",
                s.epochs,
                s.train_limit.map_or("all".into(), |n| n.to_string()),
                if s.width_multiplier != 1.0 { format!(", width x{}", s.width_multiplier) } else { String::new() }
            )
        });
        let paper = |k: usize| r.paper.map_or("-".to_string(), |p| format!("{:.2} ± {:.2}", p[k].0, p[k].1));
        let torch = |model: &str| {
            pytorch
                .get(&(model.to_string(), r.dataset.to_string(), r.paper_dataset.to_string(), width_key(&r.width)))
                .map_or("-".to_string(), |v| pm(v))
        };
        md += &format!(
            "| {} | {data} | {used} | {} | {} | {} ({}) | {} ({}) | {gap} | {} | {} | {} |\n",
            r.label,
            paper(0),
            paper(1),
            pm(&plain),
            pm(&plain_train),
            pm(&sph),
            pm(&sph_train),
            torch(r.plain),
            torch(r.spherized),
            hms(seconds)
        );
        for x in &mine {
            let s = &x.0.settings;
            csv += &format!(
                "{i},{},{},{},{},{},{},{},{},{:.4},{:.4},{:.1}\n",
                r.label,
                s.model,
                s.dataset,
                r.paper_dataset,
                x.0.spherized,
                s.seed,
                s.epochs,
                s.train_limit.map_or("all".into(), |n| n.to_string()),
                x.1,
                x.2,
                x.3
            );
        }
    }
    (md, csv)
}

/// The dispersion table: `sph analyze overlap` with the budget's epochs and subsets.
fn dispersion(budget: Budget, seeds: usize, data_dir: &Path, out: &Path, dry_run: bool) -> Result<()> {
    let mut s = recipe::paper("cnn9", "cifar10");
    budget.apply(&mut s, "cnn9");
    let width_multiplier = if budget == Budget::Paper { 1.0 } else { 0.25 };
    let operators: Vec<String> =
        ["base", "sigmoid", "linear", "cosine", "w_sigmoid", "w_linear", "w_cosine", "spherization"]
            .map(String::from)
            .to_vec();
    let mut probe = s.clone();
    probe.width_multiplier = width_multiplier;
    let rate = bench::step_rate(&probe, 10)?;
    let each = estimate(&probe, rate);
    println!(
        "dispersion, budget {}: {} operators x {seeds} seeds of CNN-9 x{width_multiplier}, {} epochs x {} images, schedule {}, ~{} each, ~{} in all",
        budget.name(),
        operators.len(),
        s.epochs,
        s.train_limit.map_or("all".into(), |n| n.to_string()),
        s.schedule,
        hms(each),
        hms(each * (operators.len() * seeds) as f64)
    );
    if dry_run {
        return Ok(());
    }
    analyze::run_overlap(OverlapArgs {
        operators,
        epochs: s.epochs,
        width_multiplier,
        train_limit: s.train_limit,
        test_limit: s.test_limit,
        seeds: (0..seeds as u64).collect(),
        tau: 1e-3,
        out: out.to_path_buf(),
        data: Some(data_dir.to_path_buf()),
        threads: None,
    })?;
    files::copy_atomic(&out.join("overlap.txt"), &out.join("dispersion.md"))?;
    files::copy_atomic(&out.join("overlap.csv"), &out.join("dispersion.csv"))?;
    println!("wrote {0}/dispersion.md and {0}/dispersion.csv", out.display());
    Ok(())
}

/// Figures 4 and 5 through their `sph figure` commands, with the budget's epochs and subsets.
fn figure(table: &str, budget: Budget, data_dir: &Path, out: &Path, dry_run: bool) -> Result<()> {
    let (epochs, train_limit) = match budget {
        Budget::Smoke => (1, Some(1000)),
        Budget::Cpu => (if table == "fig4" { 15 } else { 20 }, if table == "fig4" { Some(10_000) } else { None }),
        Budget::Paper => (if table == "fig4" { 300 } else { 20 }, None),
    };
    let what = if table == "fig4" {
        "gradient flow of a trained VGG-11-BN pair (sph figure gradflow)"
    } else {
        "2-D/3-D MNIST representations (sph figure sphere)"
    };
    println!(
        "{table}, budget {}: {what}, {epochs} epochs on {} training images, into {}",
        budget.name(),
        train_limit.map_or("all".into(), |n: usize| n.to_string()),
        out.display()
    );
    if dry_run {
        return Ok(());
    }
    if table == "fig4" {
        figures::run_gradflow(figures::GradflowArgs {
            steps: None,
            epochs: Some(epochs),
            train_limit,
            width_multiplier: if budget == Budget::Smoke { 0.125 } else { 1.0 },
            batch_size: 128,
            seed: 0,
            out: out.to_path_buf(),
            data: Some(data_dir.to_path_buf()),
            force: true,
        })
    } else {
        figures::run_sphere(figures::SphereArgs {
            epochs,
            train_limit,
            test_limit: if budget == Budget::Smoke { Some(1000) } else { None },
            seed: 0,
            out: out.to_path_buf(),
            data: Some(data_dir.to_path_buf()),
            force: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_compress_to_short_budgets() {
        assert_eq!(compress_schedule("step:30:0.5", 300, 15), "multistep:2,3,5,6,8,9,11,12,14,15:0.5");
        assert_eq!(compress_schedule("multistep:60,120,160:0.2", 200, 15), "multistep:5,9,12:0.2");
        assert_eq!(compress_schedule("constant", 100, 1), "constant");
        assert_eq!(compress_schedule("multistep:80,130:0.1", 160, 1), "constant");
    }

    #[test]
    fn every_table_has_a_plan_with_plain_and_spherized_runs() {
        for table in ["table1", "table2"] {
            let rows = rows(table);
            let runs = plan(&rows, Budget::Smoke, 2, Path::new("x"));
            assert_eq!(runs.len(), rows.len() * 2 * 2);
            assert!(runs.iter().all(|r| r.settings.epochs == 1 && r.settings.train_limit.is_some()));
            let dirs: std::collections::BTreeSet<_> = runs.iter().map(|r| r.dir.clone()).collect();
            assert_eq!(dirs.len(), runs.len(), "every run has its own folder");
        }
    }

    #[test]
    fn rows_can_be_run_alone() {
        let rows = rows("table2");
        let all = || plan(&rows, Budget::Cpu, 1, Path::new("unused"));
        let (picked, others) = select_rows(all(), &[4, 5], rows.len(), "table2").unwrap();
        assert_eq!(others.len(), (rows.len() - 2) * 2);
        let labels: Vec<&str> = picked.iter().map(|r| rows[r.row].label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "VGG-11 128/256/512/1024",
                "VGG-11 128/256/512/1024",
                "VGG-11 256/512/1024/1024",
                "VGG-11 256/512/1024/1024"
            ]
        );
        assert_eq!(select_rows(all(), &[], rows.len(), "table2").unwrap().0.len(), rows.len() * 2);
        let err = select_rows(all(), &[8], rows.len(), "table2").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("--rows: expected row numbers from 1 to 7 of table2, found 8"));
        assert!(select_rows(all(), &[0], rows.len(), "table2").is_err());
    }

    #[test]
    fn the_cheapest_rows_run_first_with_their_runs_together() {
        let rows = rows("table2");
        let runs = plan(&rows, Budget::Cpu, 1, Path::new("unused"));
        // Row 1 costs least, row 0 most; within a row the spherized run is the cheaper one.
        let estimates: Vec<f64> =
            runs.iter().map(|r| [9.0, 1.0, 5.0][r.row.min(2)] - r.spherized as u8 as f64 * 0.5).collect();
        let (ordered, secs) = cheapest_rows_first(runs, estimates);
        let order: Vec<(usize, bool)> = ordered.iter().map(|r| (r.row, r.spherized)).collect();
        assert_eq!(&order[..4], &[(1, false), (1, true), (2, false), (2, true)]);
        assert_eq!(*order.last().unwrap(), (0, true));
        assert_eq!(secs[0], 1.0, "estimates move with their runs");
    }

    #[test]
    fn runs_finished_by_an_earlier_call_are_read_back_once_per_epoch() {
        let out = std::env::temp_dir().join(format!("sph-earlier-rows-{}", std::process::id()));
        let rows = rows("table1");
        let run = plan(&rows, Budget::Smoke, 1, &out).remove(0);
        assert_eq!(run.settings.epochs, 1, "the smoke budget trains one epoch");
        std::fs::create_dir_all(&run.dir).unwrap();
        let line = |acc: f64, secs: f64| {
            format!(
                "{{\"epoch\":1,\"train_loss\":1.0,\"train_acc\":{acc},\"test_loss\":1.0,\"test_acc\":{acc},\"lr\":0.1,\"sphere\":[],\"seconds\":{secs}}}\n"
            )
        };
        assert_eq!(finished_earlier(&run), None, "nothing logged yet");
        // An epoch logged twice (a run resumed before its epoch was recorded) counts once, the last line.
        std::fs::write(run.dir.join("metrics.jsonl"), line(0.5, 7.0) + &line(0.75, 9.0)).unwrap();
        assert_eq!(finished_earlier(&run), Some((75.0, 75.0, 9.0)));
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn a_table_cut_short_shows_the_finished_runs() {
        let out = std::env::temp_dir().join(format!("sph-partial-table-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let rows = rows("table1");
        let runs = plan(&rows, Budget::Smoke, 1, &out);
        let results: Vec<Outcome> = vec![(&runs[0], 91.0, 90.25, 12.0)];
        let md = write_tables("table1", Budget::Smoke, &rows, &results, runs.len(), &out).unwrap();
        assert!(md.starts_with(&format!("(partial: 1 of {} runs finished", runs.len())), "{md}");
        assert!(
            md.contains(
                "| SimpleFNN | mnist | 1 ep x 10000 img | 98.58 ± 0.03 | 98.65 ± 0.04 | 90.25 (91.00) | - (-) | - |"
            ),
            "{md}"
        );
        assert_eq!(std::fs::read_to_string(out.join("table1.md")).unwrap(), md);
        let csv = std::fs::read_to_string(out.join("table1.csv")).unwrap();
        assert_eq!(csv.lines().count(), 2, "a header and the one finished run: {csv}");
        // All runs finished: no partial note.
        let all: Vec<Outcome> = runs.iter().map(|r| (r, 50.0, 50.0, 1.0)).collect();
        assert!(!write_tables("table1", Budget::Smoke, &rows, &all, runs.len(), &out).unwrap().contains("partial"));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
