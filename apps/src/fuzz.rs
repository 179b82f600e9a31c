//! `sph fuzz TARGET` (hidden; run by scripts/fuzz.sh): feeds every file reader mutated real
//! files and random bytes on stable Rust, counting panics and the peak memory.
//!
//! Each input is written to a scratch file and read through the same entry point as the
//! commands use. A reader may reject an input (that is what it should do); it must not
//! panic, hang or allocate what the input merely claims.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use datasets::cifar::{encode_cifar10, encode_cifar100, FINE_TO_COARSE, PIXELS};
use datasets::idx::{encode_images, encode_labels};
use models::{Model, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore, SeedableRng};

use crate::recipe;
use crate::run_state::{self, EpochMetrics};
use crate::trainer::build_optimizer;

/// The readers, by target name.
pub const TARGETS: [&str; 7] =
    ["idx-images", "idx-labels", "idx-gzip", "cifar10", "cifar100", "checkpoint", "run-config"];

/// Peak resident memory allowed for any target, in MB: the readers hold the input and at
/// most what its length can back, so anything near this means a header was believed.
const RSS_LIMIT_MB: f64 = 512.0;

/// Flags of `sph fuzz`.
#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// One of idx-images, idx-labels, idx-gzip, cifar10, cifar100, checkpoint, run-config.
    pub target: String,
    /// Number of inputs.
    #[arg(long, default_value_t = 1_000_000)]
    pub inputs: u64,
    /// Seed of the mutations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Data directory with real MNIST and CIFAR-10 files to start from (synthetic ones are
    /// used where a data set is missing).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// The mutations' random numbers (rand's seeded generator: repeatable for a seed).
struct Rng(StdRng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.gen_range(0..n.max(1))
    }
}

/// Values that sit on the edges of sizes and counts.
const INTERESTING: [u32; 9] = [0, 1, 2, 255, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 60_000, 10_000];

/// One to four mutations of `seed`: bit flips, edge values (in the header, where sizes
/// live, most of the time), truncation, insertion, duplication; or plain random bytes.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    if rng.below(10) == 0 {
        let n = rng.below(512);
        return (0..n).map(|_| rng.next() as u8).collect();
    }
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        let at = |rng: &mut Rng| if rng.below(4) > 0 { rng.below(len.min(64)) } else { rng.below(len) };
        match rng.below(6) {
            0 if len > 0 => {
                let i = at(rng);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = at(rng);
                data[i] = rng.next() as u8;
            }
            2 if len >= 4 => {
                let i = at(rng).min(len - 4);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { v.to_be_bytes() } else { v.to_le_bytes() };
                data[i..i + 4].copy_from_slice(&bytes);
            }
            3 => data.truncate(rng.below(len + 1)),
            4 => {
                let i = rng.below(len + 1);
                let extra: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                data.splice(i..i, extra);
            }
            _ if len > 0 => {
                let (a, b) = (rng.below(len), rng.below(len));
                let chunk = data[a.min(b)..a.max(b)].to_vec();
                let i = rng.below(len + 1);
                data.splice(i..i, chunk);
            }
            _ => {}
        }
    }
    data
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// The first `n` images of a real IDX file (or synthetic ones), re-headed as `n` images.
fn idx_seed(data: &Path, images: bool, n: usize) -> Vec<u8> {
    let dir = data.join("mnist");
    if images {
        if let Ok(real) = datasets::idx::read_images(&dir.join("t10k-images-idx3-ubyte")) {
            let px = real.rows * real.cols;
            return encode_images(n as u32, real.rows as u32, real.cols as u32, &real.pixels[..n * px]);
        }
        return encode_images(n as u32, 28, 28, &vec![7u8; n * 784]);
    }
    match datasets::idx::read_labels(&dir.join("t10k-labels-idx1-ubyte"), 10) {
        Ok(real) => encode_labels(&real[..n]),
        Err(_) => encode_labels(&(0..n as u8).map(|i| i % 10).collect::<Vec<_>>()),
    }
}

/// A checkpoint as `sph train` writes it, of the toy model (small, so that a million
/// inputs stay quick), with settings, history and progress in its metadata.
fn checkpoint_seed(scratch: &Path) -> Result<(Vec<u8>, Model)> {
    let s = recipe::defaults("sph_toy", "mnist");
    let model = models::build("sph_toy", &ModelConfig { classes: 2, ..ModelConfig::default() })?;
    let opt = build_optimizer(&s)?;
    let path = scratch.join("seed.safetensors");
    let history = vec![EpochMetrics {
        epoch: 1,
        train_loss: 0.5,
        train_acc: 0.9,
        test_loss: 0.6,
        test_acc: 0.8,
        lr: 1e-3,
        sphere: vec![("sphere".into(), 1.0, 1.0)],
        seconds: 0.0,
        images_per_sec: 0.0,
    }];
    run_state::save_run_checkpoint(&path, &model, opt.as_ref(), &s, &history)?;
    Ok((std::fs::read(&path)?, model))
}

/// A run folder's config.json (as `sph train` writes it) followed by its metrics.jsonl,
/// separated by a NUL byte; the target splits them there.
fn run_config_seed() -> Result<Vec<u8>> {
    let s = recipe::paper("sph_lenet", "mnist");
    let config = serde_json::json!({ "settings": s, "threads": 2, "train_images": 60000, "test_images": 10000 });
    let metrics = r#"{"epoch":1,"train_loss":0.3,"train_acc":0.9,"test_loss":0.1,"test_acc":0.97,"lr":0.001,"sphere":[["sphere",5.1,5.0]],"seconds":30.0,"images_per_sec":2000.0}"#;
    let mut out = serde_json::to_vec_pretty(&config)?;
    out.push(0);
    out.extend_from_slice(metrics.as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// Peak resident set size of this process in MB (VmHWM), or 0 where /proc is missing.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// `sph fuzz`.
pub fn run_fuzz(args: FuzzArgs) -> Result<()> {
    if !TARGETS.contains(&args.target.as_str()) {
        bail!("unknown fuzz target '{}' (valid: {})", args.target, TARGETS.join(", "));
    }
    let data = args.data.clone().unwrap_or_else(datasets::default_data_dir);
    // Memory-backed when the machine has it: a million small files should not wear a disk.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let scratch = tmp.join(format!("sph-fuzz-{}-{}", args.target, std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let result = fuzz(&args, &data, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn fuzz(args: &FuzzArgs, data: &Path, scratch: &Path) -> Result<()> {
    let file = scratch.join("input");
    let (seeds, mut model): (Vec<Vec<u8>>, Option<Model>) = match args.target.as_str() {
        "idx-images" => (vec![idx_seed(data, true, 10), idx_seed(data, true, 1)], None),
        "idx-labels" => (vec![idx_seed(data, false, 100)], None),
        "idx-gzip" => (vec![gzip(&idx_seed(data, true, 10)), gzip(&idx_seed(data, false, 100))], None),
        "cifar10" => {
            let real = datasets::cifar::read_cifar10(&data.join("cifar-10-batches-bin/test_batch.bin"));
            let (labels, pixels) = match &real {
                Ok(r) => (r.labels[..3].to_vec(), r.pixels[..3 * PIXELS].to_vec()),
                Err(_) => (vec![1, 2, 3], vec![9u8; 3 * PIXELS]),
            };
            (vec![encode_cifar10(&labels, &pixels)], None)
        }
        "cifar100" => {
            let fine = [3u8, 40, 99];
            let coarse = fine.map(|f| FINE_TO_COARSE[f as usize]);
            (vec![encode_cifar100(&coarse, &fine, &vec![5u8; 3 * PIXELS])], None)
        }
        "checkpoint" => {
            let (bytes, model) = checkpoint_seed(scratch)?;
            (vec![bytes], Some(model))
        }
        _ => (vec![run_config_seed()?], None),
    };
    let run_dir = scratch.join("run");
    std::fs::create_dir_all(&run_dir)?;

    // Panics are counted, not printed a million times.
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    std::panic::set_hook(Box::new(|_| {
        PANICS.fetch_add(1, Ordering::SeqCst);
    }));
    let mut rng = Rng(StdRng::seed_from_u64(args.seed));
    let (mut accepted, mut slowest) = (0u64, Duration::ZERO);
    let mut first_panic: Option<Vec<u8>> = None;
    for i in 0..args.inputs {
        let input = mutate(&mut rng, &seeds[i as usize % seeds.len()]);
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| -> bool {
            match args.target.as_str() {
                "run-config" => {
                    let split = input.iter().position(|&b| b == 0).unwrap_or(input.len());
                    let _ = std::fs::write(run_dir.join("config.json"), &input[..split]);
                    let _ = std::fs::write(run_dir.join("metrics.jsonl"), input.get(split + 1..).unwrap_or(&[]));
                    crate::report::read_run(&run_dir).is_ok()
                }
                target => {
                    let _ = std::fs::write(&file, &input);
                    match target {
                        "idx-images" => datasets::idx::read_images(&file).is_ok(),
                        "idx-labels" => datasets::idx::read_labels(&file, 10).is_ok(),
                        "idx-gzip" => {
                            datasets::idx::read_images(&file).is_ok() | datasets::idx::read_labels(&file, 10).is_ok()
                        }
                        "cifar10" => datasets::cifar::read_cifar10(&file).is_ok(),
                        "cifar100" => datasets::cifar::read_cifar100(&file).is_ok(),
                        _ => model.as_mut().is_some_and(|m| run_state::read_run_checkpoint(&file, m).is_ok()),
                    }
                }
            }
        }));
        slowest = slowest.max(started.elapsed());
        match outcome {
            Ok(ok) => accepted += ok as u64,
            Err(_) => {
                if first_panic.is_none() {
                    first_panic = Some(input);
                }
            }
        }
    }
    let _ = std::panic::take_hook();
    let panics = PANICS.load(Ordering::SeqCst);
    let rss = peak_rss_mb();
    println!(
        "{}: {} inputs, {panics} panics, max RSS {rss:.0} MB ({accepted} accepted, slowest input {:.1} ms)",
        args.target,
        args.inputs,
        slowest.as_secs_f64() * 1e3
    );
    if let Some(input) = first_panic {
        let keep = std::env::temp_dir().join(format!("sph-fuzz-{}-panic.bin", args.target));
        std::fs::write(&keep, input)?;
        bail!("{}: {panics} inputs made a reader panic; the first is in {}", args.target, keep.display());
    }
    if rss > RSS_LIMIT_MB {
        bail!("{}: peak memory {rss:.0} MB is above the limit of {RSS_LIMIT_MB} MB", args.target);
    }
    Ok(())
}
