//! The one training loop. `sph train`, the figures and the analyses all train through a
//! [`Trainer`] (one step: forward, loss, backward, a look at the gradients, update; one
//! epoch over a loader; the divergence check), count with a [`Tally`], and evaluate with
//! [`evaluate`], which goes through the model's one evaluation forward.

use anyhow::{anyhow, bail, Result};
use datasets::Loader;
use engine::ops::elementwise::mix_seed;
use engine::optim::{Adam, Optimizer, Schedule, Sgd};
use engine::{Graph, Mode, Tensor};
use models::Model;
use serde::{Deserialize, Serialize};

use crate::dist::{self, Reducer};
use crate::recipe::Settings;

/// Summed loss, correct predictions and images seen over some batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Sum over images of the loss (batch mean times batch size).
    pub loss_sum: f64,
    /// Correct predictions.
    pub correct: usize,
    /// Images counted.
    pub seen: usize,
}

impl Tally {
    /// Adds a batch of `n` images with mean loss `loss`.
    pub fn add(&mut self, loss: f32, correct: usize, n: usize) {
        self.loss_sum += loss as f64 * n as f64;
        self.correct += correct;
        self.seen += n;
    }

    /// Mean loss per image (0 before any image).
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }

    /// Fraction of correct predictions (0 before any image).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// Correct predictions of a batch: the arg-max of each logits row against its label.
pub fn count_correct(logits: &Tensor, labels: &[usize]) -> usize {
    count_matches(&logits.argmax_last(), labels)
}

/// How many predicted classes equal their labels.
pub fn count_matches(predictions: &[usize], labels: &[usize]) -> usize {
    predictions.iter().zip(labels).filter(|(p, l)| p == l).count()
}

/// The error of a step whose loss is not finite; callers add what to do about it.
#[derive(Debug)]
pub struct Diverged {
    /// The loss that came out.
    pub loss: f32,
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based step within the epoch.
    pub step: usize,
    /// Learning rate at that step.
    pub lr: f32,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loss became {} at epoch {}, step {} (lr {})", self.loss, self.epoch + 1, self.step + 1, self.lr)
    }
}

impl std::error::Error for Diverged {}

/// The optimizer the settings name, with their learning rate, momentum and weight decay.
pub fn build_optimizer(s: &Settings) -> Result<Box<dyn Optimizer>> {
    Ok(match s.optimizer.as_str() {
        "sgd" => Box::new(Sgd::new(s.lr, s.momentum, s.weight_decay, s.nesterov)),
        "adam" => Box::new(Adam::new(s.lr, s.weight_decay)),
        "adamw" => Box::new(Adam::new_w(s.lr, s.weight_decay)),
        other => bail!("--optimizer: expected sgd, adam or adamw, found '{other}'"),
    })
}

/// How an epoch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    /// Steps of the epoch done so far (skipped ones included).
    pub steps_done: usize,
    /// True when the `after_step` hook asked to stop before the loader ran out.
    pub stopped: bool,
}

/// A model with its optimizer and learning-rate schedule.
pub struct Trainer {
    /// The model being trained.
    pub model: Model,
    /// Its optimizer (state included).
    pub opt: Box<dyn Optimizer>,
    schedule: Schedule,
    base_lr: f32,
    seed: u64,
    /// Sums the gradients across the ranks of an MPI run (idle in one process).
    pub reducer: Reducer,
}

impl Trainer {
    /// A trainer for `model` with the optimizer and schedule of the settings `s`.
    pub fn from_settings(model: Model, s: &Settings) -> Result<Trainer> {
        let schedule: Schedule = s.schedule.parse().map_err(|e| anyhow!("--schedule: {e}"))?;
        Ok(Trainer {
            model,
            opt: build_optimizer(s)?,
            schedule,
            base_lr: s.lr,
            seed: s.seed,
            reducer: Reducer::default(),
        })
    }

    /// A trainer with an optimizer of the caller's and a constant learning rate.
    pub fn new(model: Model, opt: Box<dyn Optimizer>, seed: u64) -> Trainer {
        let base_lr = opt.lr();
        Trainer { model, opt, schedule: Schedule::Constant, base_lr, seed, reducer: Reducer::default() }
    }

    /// Sets the learning rate the schedule gives for `epoch` (0-based) and returns it.
    pub fn begin_epoch(&mut self, epoch: usize) -> f32 {
        let lr = self.schedule.lr_at(self.base_lr, epoch);
        self.opt.set_lr(lr);
        lr
    }

    /// One step on a batch: forward, loss, backward; `inspect` sees the model with the
    /// batch's fresh gradients; then the update. Returns (mean loss, correct predictions);
    /// a loss that is not finite is a [`Diverged`] error and nothing is updated.
    /// Dropout masks depend only on (seed, epoch, step), so a resumed run repeats exactly.
    /// In an MPI run `x` is the global batch: this rank computes on its share, the gradients
    /// and the counts are summed over the ranks (see [`crate::dist`]), and every rank returns
    /// the same values.
    pub fn step(
        &mut self,
        x: Tensor,
        labels: &[usize],
        epoch: usize,
        step: usize,
        inspect: impl FnOnce(&Model),
    ) -> Result<(f32, usize)> {
        let group = dist::group();
        let batch = labels.len();
        let (x, labels) = if group.size > 1 {
            let (first, count) = dist::shard(batch, group);
            let row = x.len() / batch.max(1);
            let mut shape = x.shape().to_vec();
            shape[0] = count;
            (
                Tensor::from_vec(&shape, x.data()[first * row..(first + count) * row].to_vec())?,
                &labels[first..first + count],
            )
        } else {
            (x, labels)
        };
        // Each rank of an MPI run draws its own dropout masks (its own part of the batch),
        // fixed by (seed, epoch, step, rank).
        let seed = if group.size > 1 {
            mix_seed(&[self.seed, epoch as u64, step as u64, group.rank as u64])
        } else {
            mix_seed(&[self.seed, epoch as u64, step as u64])
        };
        self.model.params_mut().zero_grads();
        let (mut loss, mut correct) = (0.0f32, 0usize);
        if !labels.is_empty() {
            let (net, params) = self.model.split_mut();
            let mut g = Graph::new(params, Mode::Train, seed);
            let xv = g.input(x);
            let logits = net.forward(&mut g, xv)?;
            let loss_var = g.softmax_cross_entropy(logits, labels)?;
            g.backward(loss_var)?;
            (loss, correct) = (g.value(loss_var).item(), count_correct(g.value(logits), labels));
        }
        if group.size > 1 {
            // This rank's gradient of its mean loss, weighted by its share of the batch: summed
            // over the ranks, the gradient of the global batch's mean loss.
            let share = labels.len() as f32 / batch as f32;
            self.reducer.sum_gradients(self.model.params_mut(), share);
            let mut counts = [loss as f64 * labels.len() as f64, correct as f64];
            dist::sum_f64(&mut counts);
            (loss, correct) = ((counts[0] / batch as f64) as f32, counts[1] as usize);
        }
        if !loss.is_finite() {
            return Err(Diverged { loss, epoch, step, lr: self.opt.lr() }.into());
        }
        inspect(&self.model);
        self.opt.step(self.model.params_mut());
        Ok((loss, correct))
    }

    /// One epoch over `loader` (batches prepared one ahead), skipping its first `skip`
    /// steps (a resumed epoch). Each step is added to `tally`; `inspect` sees the gradients
    /// before each update; `after_step(steps_done, tally)` returns false to stop early.
    pub fn epoch(
        &mut self,
        loader: &Loader,
        epoch: usize,
        skip: usize,
        tally: &mut Tally,
        mut inspect: impl FnMut(&Model),
        mut after_step: impl FnMut(usize, &Tally) -> bool,
    ) -> Result<EpochEnd> {
        let mut end = EpochEnd { steps_done: skip, stopped: false };
        let mut step = 0usize;
        loader.for_each_prefetched(epoch, |batch| -> Result<()> {
            let this_step = step;
            step += 1;
            if this_step < skip || end.stopped {
                return Ok(());
            }
            let n = batch.labels.len();
            let x = Tensor::from_vec(&batch.shape, batch.images)?;
            let (loss, correct) = self.step(x, &batch.labels, epoch, this_step, &mut inspect)?;
            tally.add(loss, correct, n);
            end.steps_done = this_step + 1;
            // A stop (Ctrl-C, SIGTERM) asked on any rank stops every rank after the same step.
            end.stopped = dist::any(!after_step(end.steps_done, tally));
            Ok(())
        })?;
        Ok(end)
    }
}

/// Mean loss, accuracy and confusion matrix (rows: true class) over a data set.
pub struct Evaluation {
    /// Mean cross-entropy per image.
    pub loss: f64,
    /// Fraction of correct predictions.
    pub acc: f64,
    /// Counts by (true class, predicted class).
    pub confusion: Vec<Vec<usize>>,
}

/// Evaluates `model` in evaluation mode over the whole loader. In an MPI run the batches are
/// split across ranks (batch b on rank b mod size), after the ranks' batch-norm statistics
/// were averaged, and the counts are summed: every rank returns the same evaluation.
pub fn evaluate(model: &mut Model, loader: &Loader) -> Result<Evaluation> {
    dist::average_buffers(model.params_mut());
    // Evaluation batches have other shapes than training steps: start from an empty pool,
    // and leave one for the training that follows.
    engine::release_buffers();
    let evaluation = evaluate_batches(model, loader);
    engine::release_buffers();
    evaluation
}

fn evaluate_batches(model: &mut Model, loader: &Loader) -> Result<Evaluation> {
    let classes = model.classes();
    let group = dist::group();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut tally = Tally::default();
    let mut b = 0;
    loader.for_each_prefetched(0, |batch| -> Result<()> {
        let mine = b % group.size == group.rank;
        b += 1;
        if !mine {
            return Ok(());
        }
        let x = Tensor::from_vec(&batch.shape, batch.images)?;
        let (_, logits, loss) = model.evaluate_with_loss(x, &batch.labels)?;
        let pred = logits.argmax_last();
        for (&p, &l) in pred.iter().zip(&batch.labels) {
            confusion[l][p] += 1;
        }
        tally.add(loss, count_matches(&pred, &batch.labels), batch.labels.len());
        Ok(())
    })?;
    if group.size > 1 {
        let mut counts: Vec<f64> = [tally.loss_sum, tally.correct as f64, tally.seen as f64]
            .into_iter()
            .chain(confusion.iter().flatten().map(|&c| c as f64))
            .collect();
        dist::sum_f64(&mut counts);
        tally = Tally { loss_sum: counts[0], correct: counts[1] as usize, seen: counts[2] as usize };
        for (c, &v) in confusion.iter_mut().flatten().zip(&counts[3..]) {
            *c = v as usize;
        }
    }
    Ok(Evaluation { loss: tally.mean_loss(), acc: tally.accuracy(), confusion })
}
