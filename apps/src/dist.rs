//! Data-parallel training across processes, through MPI (`mpirun -np N sph train ...`).
//!
//! Every rank holds the whole model. `--batch-size` stays the global batch: each rank trains on
//! its contiguous share of every batch of the shuffled order (which depends only on seed and
//! epoch, so every rank knows it); when the batch does not divide, the first ranks take one
//! image more. After backward, each rank's mean-loss gradients are weighted by its share of
//! the batch and summed over the ranks with `MPI_Allreduce`, a few large buckets at a time, so
//! every rank holds the gradient of the global batch's mean loss and takes the same optimizer
//! step: the parameters stay identical without a broadcast (`--check-sync` compares a hash of
//! them across ranks after every epoch; debug builds always do). Batch-norm normalizes with
//! each rank's own batch statistics, as PyTorch's DDP does by default; the running statistics
//! are averaged across ranks before every evaluation and checkpoint, so every rank evaluates
//! and saves the same model. Evaluation batches are split across ranks and the counts summed.
//! Rank 0 alone prints and writes files; the others' standard output is discarded.
//!
//! Without the cargo feature `mpi` (the default build) nothing here talks to MPI, and a run
//! that the launcher started as one of several ranks stops at once with an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Result;
use engine::{Kind, ParamStore};

/// This process's place among the ranks of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// 0-based rank.
    pub rank: usize,
    /// Number of ranks (1 without MPI).
    pub size: usize,
}

static GROUP: OnceLock<Group> = OnceLock::new();
static CHECK_SYNC: AtomicBool = AtomicBool::new(cfg!(debug_assertions));

/// The ranks of this run (rank 0 of 1 when not started by an MPI launcher).
pub fn group() -> Group {
    *GROUP.get().unwrap_or(&Group { rank: 0, size: 1 })
}

/// Whether this process prints and writes the run's files (rank 0).
pub fn is_root() -> bool {
    group().rank == 0
}

/// Compare the parameters across ranks after every epoch (`--check-sync`).
pub fn set_check_sync(on: bool) {
    CHECK_SYNC.fetch_or(on, Ordering::Relaxed);
}

/// The number of ranks an MPI launcher says this process is one of, from the variables
/// Open MPI, MPICH / Intel MPI (Hydra) and Slurm's PMI set; `None` outside a launcher.
fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Keeps MPI initialized while the program runs; finalizes it when dropped.
pub struct Session {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

/// Joins the MPI run this process was started in, if any (call once, first thing in main).
pub fn init() -> Result<Session> {
    #[cfg(feature = "mpi")]
    {
        use mpi::traits::Communicator;
        if launched_ranks().is_none() {
            return Ok(Session { _universe: None });
        }
        // Serialized: the command runs on a rayon worker (see `train::in_pool`), not on the
        // thread that initialized MPI, but only that one thread calls MPI, one call at a time.
        let (universe, provided) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| anyhow::anyhow!("MPI was initialized twice"))?;
        if provided < mpi::Threading::Serialized {
            anyhow::bail!(
                "this MPI library offers thread support {provided:?}; sph calls MPI from a worker thread and needs at least Serialized"
            );
        }
        let world = universe.world();
        let group = Group { rank: world.rank() as usize, size: world.size() as usize };
        let _ = GROUP.set(group);
        if group.rank > 0 {
            silence_stdout();
        }
        Ok(Session { _universe: Some(universe) })
    }
    #[cfg(not(feature = "mpi"))]
    {
        if let Some(n) = launched_ranks().filter(|&n| n > 1) {
            anyhow::bail!(
                "this build of sph has no MPI support, but was started as one of {n} ranks; rebuild with `cargo build --release --features mpi` (needs the system's MPI library), or run one process"
            );
        }
        Ok(Session {})
    }
}

/// Sends this process's standard output to /dev/null: rank 0 alone prints.
#[cfg(feature = "mpi")]
fn silence_stdout() {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn dup2(old: i32, new: i32) -> i32;
    }
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 on two open descriptors; the standard output is replaced atomically.
        unsafe {
            dup2(null.as_raw_fd(), 1);
        }
    }
}

/// Ends the whole run with `code` when it has several ranks (MPI_Abort: the others are
/// blocked in a collective call, waiting for this one); returns otherwise.
pub fn abort_others(code: i32) {
    #[cfg(feature = "mpi")]
    if group().size > 1 {
        use mpi::traits::Communicator;
        std::io::Write::flush(&mut std::io::stderr()).ok();
        mpi::topology::SimpleCommunicator::world().abort(code);
    }
    let _ = code;
}

/// Waits until every rank gets here.
pub fn barrier() {
    #[cfg(feature = "mpi")]
    if group().size > 1 {
        use mpi::collective::CommunicatorCollectives;
        mpi::topology::SimpleCommunicator::world().barrier();
    }
}

/// Replaces `values` by their sum over the ranks (element by element).
pub fn sum_f64(values: &mut [f64]) {
    #[cfg(feature = "mpi")]
    if group().size > 1 {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        let send = values.to_vec();
        mpi::topology::SimpleCommunicator::world().all_reduce_into(&send[..], values, SystemOperation::sum());
    }
    let _ = values;
}

/// True on every rank when `flag` is true on any.
pub fn any(flag: bool) -> bool {
    let mut v = [flag as u8 as f64];
    sum_f64(&mut v);
    v[0] > 0.0
}

/// True on every rank when `value` is the same on all of them.
pub fn all_equal(value: u64) -> bool {
    // The value in two halves (exact in f64), summed: equal on all ranks iff each half's sum is
    // size times this rank's half on every rank, which `any` then agrees on.
    let size = group().size as f64;
    let mut v = [(value >> 32) as f64, (value & 0xFFFF_FFFF) as f64];
    let mine = v;
    sum_f64(&mut v);
    !any(v[0] != mine[0] * size || v[1] != mine[1] * size)
}

/// The rows `[first, first + count)` of a global batch of `batch` that rank `rank` of `size`
/// trains on: contiguous shares, the first `batch % size` ranks one row more.
pub fn shard(batch: usize, g: Group) -> (usize, usize) {
    let (base, extra) = (batch / g.size, batch % g.size);
    (g.rank * base + g.rank.min(extra), base + usize::from(g.rank < extra))
}

/// Gradients are summed across ranks in buckets of this many floats (16 MB): few calls per
/// step, and buffers small enough to stay out of the way.
const BUCKET: usize = 1 << 22;

/// Sums the gradients of all ranks, bucket by bucket, and times it.
#[derive(Default)]
pub struct Reducer {
    send: Vec<f32>,
    recv: Vec<f32>,
    /// Seconds spent in the sums so far.
    pub seconds: f64,
    /// Sums done so far (steps).
    pub calls: usize,
}

impl Reducer {
    /// `grad = sum over ranks of (scale_r * grad_r)` for every learnable parameter, where this
    /// rank's `scale` is its share of the global batch. Parameters are packed in store order
    /// into flat buckets of about [`BUCKET`] floats, one `MPI_Allreduce` per bucket.
    pub fn sum_gradients(&mut self, store: &mut ParamStore, scale: f32) {
        if group().size == 1 {
            return;
        }
        let started = Instant::now();
        let ids: Vec<_> = store.learnable().collect();
        let mut start = 0;
        while start < ids.len() {
            // The bucket: parameters from `start` on while they fit (at least one).
            let mut end = start;
            let mut len = 0;
            while end < ids.len() && (end == start || len + store.grad(ids[end]).len() <= BUCKET) {
                len += store.grad(ids[end]).len();
                end += 1;
            }
            self.send.clear();
            for &id in &ids[start..end] {
                self.send.extend(store.grad(id).data().iter().map(|&g| g * scale));
            }
            self.recv.resize(len, 0.0);
            all_reduce_f32(&self.send, &mut self.recv);
            let mut at = 0;
            for &id in &ids[start..end] {
                let g = store.grad_mut(id).data_mut();
                g.copy_from_slice(&self.recv[at..at + g.len()]);
                at += g.len();
            }
            start = end;
        }
        self.seconds += started.elapsed().as_secs_f64();
        self.calls += 1;
    }
}

/// `recv = sum over ranks of send`.
fn all_reduce_f32(send: &[f32], recv: &mut [f32]) {
    #[cfg(feature = "mpi")]
    {
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        mpi::topology::SimpleCommunicator::world().all_reduce_into(send, recv, SystemOperation::sum());
    }
    #[cfg(not(feature = "mpi"))]
    recv.copy_from_slice(send);
}

/// Averages the non-learned buffers (batch-norm running statistics) over the ranks, so that
/// every rank evaluates and saves the same model.
pub fn average_buffers(store: &mut ParamStore) {
    let size = group().size;
    if size == 1 {
        return;
    }
    let ids: Vec<_> = store.ids().filter(|&id| store.kind(id) == Kind::Buffer).collect();
    let mut flat: Vec<f64> = ids.iter().flat_map(|&id| store.value(id).data().iter().map(|&v| v as f64)).collect();
    sum_f64(&mut flat);
    let mut at = 0;
    for id in ids {
        for v in store.value_mut(id).data_mut() {
            *v = (flat[at] / size as f64) as f32;
            at += 1;
        }
    }
}

/// Fails when the parameters (and buffers) differ between ranks: a hash of their bytes,
/// compared, when `--check-sync` asked for it (or in debug builds).
pub fn check_in_sync(store: &ParamStore, epoch: usize) -> Result<()> {
    if group().size == 1 || !CHECK_SYNC.load(Ordering::Relaxed) {
        return Ok(());
    }
    // FNV-1a over every value's bits, in store order.
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for id in store.ids() {
        for v in store.value(id).data() {
            hash = (hash ^ u64::from(v.to_bits())).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    if !all_equal(hash) {
        anyhow::bail!("--check-sync: the ranks' parameters differ after epoch {}", epoch + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order() {
        for (batch, size) in [(128, 2), (127, 2), (10, 3), (2, 4), (1, 1)] {
            let mut next = 0;
            for rank in 0..size {
                let (first, count) = shard(batch, Group { rank, size });
                assert_eq!(first, next, "batch {batch} over {size}: rank {rank} starts where the last ended");
                assert!(count == batch / size || count == batch / size + 1);
                next += count;
            }
            assert_eq!(next, batch, "batch {batch} over {size}: every row once");
        }
    }

    #[test]
    fn one_process_is_rank_zero_of_one_and_collectives_are_identities() {
        assert_eq!(group(), Group { rank: 0, size: 1 });
        let mut v = [1.5, -2.0];
        sum_f64(&mut v);
        assert_eq!(v, [1.5, -2.0]);
        assert!(any(true) && !any(false) && all_equal(42));
    }
}
