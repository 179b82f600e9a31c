//! Recycled f32 buffers, so that a training step reuses the memory of the previous one.
//!
//! Each step allocates the same activations and gradients again, many of them larger than what
//! the system allocator keeps on its heap (glibc maps anything above 32 MB fresh from the OS):
//! every step then page-faults and zero-fills hundreds of megabytes, which cost VGG-11-BN more
//! than a tenth of its step. Buffers of at least [`MIN_LEN`] floats are therefore kept here
//! by exact length when a tensor (or a kernel's scratch) is dropped, and handed out again,
//! zeroed, to the next request of that length. A request the pool cannot serve frees as much
//! pooled memory as it allocates, so the pool does not raise the peak memory of a run that
//! changes shapes (training, then evaluation batches); it holds at most [`MAX_POOLED`] floats.

use std::collections::HashMap;
use std::sync::Mutex;

/// Smaller buffers come and go through the allocator's own free lists quickly enough.
pub(crate) const MIN_LEN: usize = 1 << 16;
/// At most this many floats (1 GiB) wait in the pool.
pub(crate) const MAX_POOLED: usize = 1 << 28;

/// Free buffers by length, and the floats they hold in all.
struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    pooled: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// A zeroed buffer of `len` floats, recycled when one of that length is free.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    filled(len, 0.0)
}

/// A buffer of `len` copies of `value`, recycled when one of that length is free.
pub(crate) fn filled(len: usize, value: f32) -> Vec<f32> {
    match take(len) {
        Some(mut buf) => {
            buf.fill(value);
            buf
        }
        None => fresh(len, value),
    }
}

/// A buffer of `len` floats for a caller that writes every element before reading it: a
/// recycled one keeps what it held (saving a pass over memory), a new one is zeroed.
pub(crate) fn overwritten(len: usize) -> Vec<f32> {
    take(len).unwrap_or_else(|| fresh(len, 0.0))
}

/// A pooled buffer of exactly `len` floats, if one is free. A miss on a large request
/// (evaluation batches, another model) frees at least as much pooled memory as is about to be
/// allocated, so that the pool never adds to the peak.
fn take(len: usize) -> Option<Vec<f32>> {
    if len < MIN_LEN {
        return None;
    }
    let mut guard = POOL.lock().ok()?;
    let pool = guard.as_mut()?;
    if let Some(buf) = pool.free.get_mut(&len).and_then(Vec::pop) {
        pool.pooled -= len;
        return Some(buf);
    }
    pool.evict(len);
    None
}

/// A new buffer of `len` copies of `value`; large ones are marked as the pool's own by their
/// spare capacity (see `recycle`).
fn fresh(len: usize, value: f32) -> Vec<f32> {
    if len < MIN_LEN {
        return vec![value; len];
    }
    let mut buf = Vec::with_capacity(len + MARK);
    buf.resize(len, value);
    buf
}

/// Spare capacity that marks a buffer the pool handed out: only those come back to it.
/// Buffers made elsewhere (clones, collected results) are freed as usual, so that a step
/// that makes more of them than it asks the pool for cannot fill the pool with them.
const MARK: usize = 16;

impl Pool {
    /// Frees pooled buffers until at least `floats` are freed or the pool is empty.
    fn evict(&mut self, floats: usize) {
        let mut freed = 0;
        self.free.retain(|_, bufs| {
            while freed < floats {
                match bufs.pop() {
                    Some(buf) => freed += buf.len(),
                    None => break,
                }
            }
            !bufs.is_empty()
        });
        self.pooled -= freed.min(self.pooled);
    }
}

/// Gives `buf` back for reuse (or frees it when it is small or the pool is full).
pub(crate) fn recycle(buf: Vec<f32>) {
    let len = buf.len();
    if len < MIN_LEN || buf.capacity() != len + MARK {
        return;
    }
    if let Ok(mut guard) = POOL.lock() {
        let pool = guard.get_or_insert_with(|| Pool { free: HashMap::new(), pooled: 0 });
        if pool.pooled + len <= MAX_POOLED {
            pool.pooled += len;
            pool.free.entry(len).or_default().push(buf);
        }
    }
}

/// Frees every pooled buffer: call it where the shapes a program allocates change (from
/// training steps to evaluation batches and back), so that one phase's spare buffers do not
/// sit beside the next phase's live ones.
pub fn release_all() {
    if let Ok(mut guard) = POOL.lock() {
        *guard = None;
    }
}

/// A scratch buffer from the pool that goes back to it when dropped.
pub(crate) struct Scratch(Vec<f32>);

impl Scratch {
    /// A zeroed scratch buffer of `len` floats.
    pub(crate) fn zeroed(len: usize) -> Self {
        Scratch(zeroed(len))
    }

    /// A scratch buffer of `len` floats whose every element the caller writes before reading.
    pub(crate) fn overwritten(len: usize) -> Self {
        Scratch(overwritten(len))
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is one per process: these tests take turns.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn recycled_buffers_come_back_zeroed_and_small_ones_are_not_kept() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let len = MIN_LEN + 12_345; // a length no other test uses
        let mut buf = zeroed(len);
        buf.fill(7.0);
        let ptr = buf.as_ptr();
        recycle(buf);
        let again = zeroed(len);
        assert_eq!(again.as_ptr(), ptr, "the freed buffer is handed out again");
        assert!(again.iter().all(|&v| v == 0.0), "and zeroed");
        let other = filled(len, 2.5);
        assert_ne!(other.as_ptr(), ptr, "one buffer is not handed out twice");
        assert!(other.iter().all(|&v| v == 2.5));
        recycle(vec![1.0; 10]);
        recycle(vec![1.0; len + 1]);
        let guard = POOL.lock().unwrap();
        assert!(guard.as_ref().is_none_or(|p| !p.free.contains_key(&10)), "small buffers are freed");
        assert!(guard.as_ref().is_none_or(|p| !p.free.contains_key(&(len + 1))), "and so are buffers made elsewhere");
    }

    #[test]
    fn a_miss_frees_as_much_pooled_memory_as_it_allocates() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let (kept, asked) = (MIN_LEN + 54_321, MIN_LEN + 54_322); // lengths no other test uses
        recycle(zeroed(kept));
        let pooled_kept = |len: usize| POOL.lock().unwrap().as_ref().is_some_and(|p| p.free.contains_key(&len));
        assert!(pooled_kept(kept));
        let _fresh = zeroed(asked);
        assert!(!pooled_kept(kept), "the pooled buffer made room for the new one");
    }
}
