//! Keeping the pool's other workers awake while a command runs. A rayon worker that finds no
//! work for about 20 us goes to sleep, and waking it costs 40 to 80 us on this kind of
//! machine (a virtual CPU), longer than a whole small product: a (128x400)@(400x120) sgemm on
//! 2 threads took a median 100 to 130 us when called with 20 to 200 us of other work between
//! calls, against 50 us back to back. OpenMP runtimes (PyTorch's among them) spin-wait for a
//! while for the same reason. Here each other worker runs one job that polls the pool for
//! work until the command ends, yielding the CPU to other processes while none is found.

use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `f` on a worker of the current rayon pool while every other worker polls for work
/// instead of sleeping; returns what `f` returns once the pollers have stopped.
pub fn with_workers_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        let caller = rayon::current_thread_index();
        let done = &done;
        scope.spawn_broadcast(move |_, worker| {
            // The caller runs `f`; should it pick up its own copy of this job while waiting
            // inside `f`, polling there would never return.
            if Some(worker.index()) == caller {
                return;
            }
            while !done.load(Ordering::Acquire) {
                // Runs one pending job of the pool, if there is one.
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::thread::yield_now();
                }
            }
        });
        let result = f();
        done.store(true, Ordering::Release);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Parallel work inside reaches every worker, nested scopes finish, and the result comes
    /// back; on a one-thread pool nothing waits for a poller.
    #[test]
    fn parallel_work_inside_completes_on_every_pool_size() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (sum, workers) = pool.install(|| {
                with_workers_awake(|| {
                    let sum: u64 = (0..100_000u64).into_par_iter().map(|i| i % 7).sum();
                    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
                    // Long enough tasks that every worker takes some.
                    (0..64).into_par_iter().for_each(|_| {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        seen.lock().unwrap().insert(rayon::current_thread_index());
                    });
                    let mut inner = 0;
                    rayon::in_place_scope(|s| s.spawn(|_| inner = 5));
                    (sum + inner, seen.into_inner().unwrap().len())
                })
            });
            assert_eq!(sum, (0..100_000u64).map(|i| i % 7).sum::<u64>() + 5);
            assert_eq!(workers, threads, "{threads} threads");
        }
    }
}
