//! `sph`: train, evaluate and analyze the paper's networks on the CPU.
//!
//! Every error is printed as one line and exits with code 2.

mod analyze;
mod bench;
mod data;
mod dist;
mod eval;
mod figures;
mod files;
mod fuzz;
mod overlap;
mod plot;
mod recipe;
mod report;
mod reproduce;
mod run_state;
mod train;
mod trainer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Spherization layer experiments on the CPU: train, evaluate, analyze.
#[derive(Parser)]
#[command(name = "sph", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a registry model on a data set, with progress, logs and checkpoints.
    Train(Box<train::TrainArgs>),
    /// Evaluate a checkpoint: loss, accuracy and confusion matrix on a test set.
    Eval(eval::EvalArgs),
    /// List the registry: names, parameter counts, input shapes.
    Models,
    /// Get and look at data sets.
    Data(DataArgs),
    /// Analyses of the paper.
    Analyze(AnalyzeArgs),
    /// Summarize finished runs: accuracy mean +- std over seeds, time to a target, speed.
    Report(report::ReportArgs),
    /// Time a model's training step (images/s) on synthetic data, or with --kernels the
    /// GEMM and convolution GFLOP/s.
    Bench(bench::BenchArgs),
    /// The paper's figures, trained on a small budget and drawn as PNG.
    Figure(FigureArgs),
    /// A table or figure of the paper as planned runs at a stated budget (smoke, cpu, paper).
    Reproduce(reproduce::ReproduceArgs),
    /// Feed a file reader mutated inputs (scripts/fuzz.sh runs every target).
    #[command(hide = true)]
    Fuzz(fuzz::FuzzArgs),
}

#[derive(Args)]
struct FigureArgs {
    #[command(subcommand)]
    command: FigureCommand,
}

#[derive(Subcommand)]
enum FigureCommand {
    /// Figure 3: the toy task's input and representation spaces, plain vs spherized (toy.png).
    Toy(figures::ToyArgs),
    /// Figure 5: 2-D and 3-D MNIST test representations, the spherized ones on a sphere (sphere.png).
    Sphere(figures::SphereArgs),
    /// Figure 4: mean absolute gradient per layer, VGG-11-BN vs spherized (gradflow.png, .csv, .json).
    Gradflow(figures::GradflowArgs),
}

#[derive(Args)]
struct AnalyzeArgs {
    #[command(subcommand)]
    command: AnalyzeCommand,
}

#[derive(Subcommand)]
enum AnalyzeCommand {
    /// The dispersion analysis: overlapping angular representations and their errors (CIFAR-10).
    Overlap(analyze::OverlapArgs),
}

#[derive(Args)]
struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a data set from its own site, check its md5s and unpack it.
    Fetch {
        /// mnist, fashion-mnist, cifar10 or cifar100.
        name: String,
        /// Target directory (default: $SPH_DATA or data/).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write a grid of samples (class names listed in grid order) to a PNG.
    Show {
        /// Data set name.
        name: String,
        /// Which split to show.
        #[arg(long, default_value = "train")]
        split: String,
        /// Number of samples.
        #[arg(long, default_value_t = 64)]
        count: usize,
        /// Show the samples after the paper's training augmentation.
        #[arg(long)]
        augmented: bool,
        /// Data directory (default: $SPH_DATA or data/).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Replace the output PNG if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// The command line, with negative numbers accepted as values (so `--lr -0.1` reaches the
/// range check and its message, instead of being taken for an unknown flag).
fn command() -> clap::Command {
    fn negatives_are_values(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| if a.get_action().takes_values() { a.allow_negative_numbers(true) } else { a })
            .mut_subcommands(negatives_are_values)
    }
    negatives_are_values(Cli::command())
}

/// Parses the command line; a usage error becomes one line on stderr and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    let parsed = command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m));
    parsed.map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            // clap's first line names the problem; the rest is usage text the one-line promise leaves out.
            let rendered = e.render().to_string();
            let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            eprintln!("error: {first} (see sph --help)");
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    // First: an MPI launcher's ranks join their run (or, in a build without MPI, refuse it).
    // Held to the end of main: MPI is finalized when it drops, after the command.
    let _session = match dist::init() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    run()
}

/// Parses the command line and runs the command; every error is one line and exit code 2.
fn run() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let threads = cli.command.threads();
    let result = train::in_pool(threads, move || dispatch(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The run already said where it saved its state; 130 is the shell's code for SIGINT.
        Err(e) if e.downcast_ref::<train::Interrupted>().is_some() => ExitCode::from(130),
        Err(e) => {
            // One line: the chain of causes joined, no backtrace.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            // The other ranks of an MPI run may be waiting for this one: end them too.
            dist::abort_others(2);
            ExitCode::from(2)
        }
    }
}

/// Runs one parsed command (on a worker of the pool, see [`train::in_pool`]).
fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => train::run_train(*args),
        Command::Eval(args) => eval::run_eval(args),
        Command::Models => eval::run_models(),
        Command::Report(args) => report::run_report(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Reproduce(args) => reproduce::run_reproduce(args),
        Command::Fuzz(args) => fuzz::run_fuzz(args),
        Command::Analyze(a) => match a.command {
            AnalyzeCommand::Overlap(args) => analyze::run_overlap(args),
        },
        Command::Figure(f) => match f.command {
            FigureCommand::Toy(args) => figures::run_toy(args),
            FigureCommand::Sphere(args) => figures::run_sphere(args),
            FigureCommand::Gradflow(args) => figures::run_gradflow(args),
        },
        Command::Data(d) => match d.command {
            DataCommand::Fetch { name, dir } => data::run_fetch(&name, dir),
            DataCommand::Show { name, split, count, augmented, data, out, force } => {
                data::run_show(&name, &split, count, augmented, data, &out, force)
            }
        },
    }
}

impl Command {
    /// The command's `--threads`, for those that have one.
    fn threads(&self) -> Option<usize> {
        match self {
            Command::Train(args) => args.threads,
            Command::Eval(args) => args.threads,
            Command::Bench(args) => args.threads,
            Command::Reproduce(args) => args.threads,
            Command::Analyze(a) => match &a.command {
                AnalyzeCommand::Overlap(args) => args.threads,
            },
            _ => None,
        }
    }
}
