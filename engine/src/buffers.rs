//! Recycled f32 buffers, so that a training step reuses the memory of the previous one.
//!
//! Each step allocates the same activations and gradients again, many of them larger than what
//! the system allocator keeps on its heap (glibc maps anything above 32 MB fresh from the OS):
//! every step then page-faults and zero-fills hundreds of megabytes, which cost VGG-11-BN more
//! than a tenth of its step. Buffers of at least [`MIN_LEN`] floats are therefore kept here
//! when a tensor (or a kernel's scratch) is dropped, and handed out again to the next request
//! of their size class (lengths rounded up to one of four sizes per power of two, so that
//! similar shapes share buffers).
//!
//! Memory stays bounded by what a step really needs: the pool tracks the floats its buffers
//! hold while in use (live) and the high-water mark of that, and a miss evicts pooled buffers
//! only while live plus pooled memory would exceed that mark by more than a quarter. (Evicting
//! on every miss, as a first version did, never warmed up: each miss evicted a buffer that a
//! later request of the same step needed.) It holds at most [`MAX_POOLED`] floats.

use std::collections::HashMap;
use std::sync::Mutex;

/// Smaller buffers come and go through the allocator's own free lists quickly enough. Larger
/// ones the allocator maps fresh from the system (above 128 KB at first), and a zeroed fresh
/// mapping is first read as the shared zero page, then faults again on the first write, which
/// flushes the other cores' TLBs: on a LeNet step, that cost more than its fully connected layers.
pub(crate) const MIN_LEN: usize = 1 << 12;
/// At most this many floats (1 GiB) wait in the pool.
pub(crate) const MAX_POOLED: usize = 1 << 28;

/// Free buffers by size class, and the floats counted in and out of the pool.
struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    /// Floats of the buffers waiting in `free`.
    pooled: usize,
    /// Floats of the pool's buffers handed out and not yet back.
    live: usize,
    /// The largest `live` seen since the pool was last emptied.
    high_water: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// The size class of a request: `len` rounded up to 4, 5, 6 or 7 times a power of two (at
/// most a quarter more than asked for).
fn size_class(len: usize) -> usize {
    let top_bit = 1usize << (usize::BITS - 1 - len.max(1).leading_zeros());
    let step = (top_bit / 4).max(1);
    len.div_ceil(step) * step
}

/// A zeroed buffer of `len` floats, recycled when one of its size class is free.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    filled(len, 0.0)
}

/// A buffer of `len` copies of `value`, recycled when one of its size class is free.
pub(crate) fn filled(len: usize, value: f32) -> Vec<f32> {
    match take(len) {
        Some(mut buf) => {
            buf.clear();
            buf.resize(len, value);
            buf
        }
        None => fresh(len, value),
    }
}

/// A buffer of `len` floats for a caller that writes every element before reading it: a
/// recycled one keeps what it held (saving a pass over memory), a new one is zeroed.
pub(crate) fn overwritten(len: usize) -> Vec<f32> {
    match take(len) {
        Some(mut buf) => {
            buf.resize(len, 0.0); // truncates, or zeroes only what the last user did not hold
            buf
        }
        None => fresh(len, 0.0),
    }
}

/// A pooled buffer of `len`'s size class, if one is free.
fn take(len: usize) -> Option<Vec<f32>> {
    if len < MIN_LEN {
        return None;
    }
    POOL.lock().ok()?.get_or_insert_with(Pool::new).take(len)
}

/// A new buffer of `len` copies of `value`; large ones get the capacity of their size class
/// plus [`MARK`], which marks them as the pool's own (see [`Pool::give`]).
fn fresh(len: usize, value: f32) -> Vec<f32> {
    if len < MIN_LEN {
        return vec![value; len];
    }
    let mut buf = Vec::with_capacity(size_class(len) + MARK);
    buf.resize(len, value);
    buf
}

/// Spare capacity that marks a buffer the pool handed out: only those come back to it.
/// Buffers made elsewhere (clones, collected results) are freed as usual, so that a step
/// that makes more of them than it asks the pool for cannot fill the pool with them.
const MARK: usize = 16;

/// The size class of a buffer the pool handed out, from its capacity; `None` for any other.
fn class_of(buf: &[f32], capacity: usize) -> Option<usize> {
    let class = capacity.checked_sub(MARK)?;
    (buf.len() >= MIN_LEN && size_class(class) == class).then_some(class)
}

impl Pool {
    fn new() -> Self {
        Pool { free: HashMap::new(), pooled: 0, live: 0, high_water: 0 }
    }

    /// A free buffer of `len`'s size class, if there is one; either way the request counts
    /// as live from now on (the caller allocates on a miss), and a miss first evicts what
    /// would take memory beyond the budget.
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let class = size_class(len);
        let buf = self.free.get_mut(&class).and_then(Vec::pop);
        if buf.is_some() {
            self.pooled -= class;
        } else {
            self.evict_beyond(self.live + class);
        }
        self.live += class;
        self.high_water = self.high_water.max(self.live);
        buf
    }

    /// Takes back a buffer that [`Pool::take`]'s caller allocated or received, if it is one of
    /// the pool's and the pool has room; any other is dropped.
    fn give(&mut self, buf: Vec<f32>) {
        let Some(class) = class_of(&buf, buf.capacity()) else { return };
        self.live = self.live.saturating_sub(class);
        if self.pooled + class <= MAX_POOLED {
            self.pooled += class;
            self.free.entry(class).or_default().push(buf);
        }
    }

    /// Frees pooled buffers, largest first, until `live + pooled` is within a quarter above
    /// the high-water mark of live memory (or the pool is empty).
    fn evict_beyond(&mut self, live: usize) {
        let budget = self.high_water.max(live) + self.high_water / 4;
        while live + self.pooled > budget {
            let Some(&class) = self.free.keys().max() else { break };
            let bufs = self.free.get_mut(&class).expect("a key of the map");
            bufs.pop();
            if bufs.is_empty() {
                self.free.remove(&class);
            }
            self.pooled -= class;
        }
    }

    /// Frees every pooled buffer; the high-water mark starts again from what is live now.
    fn clear(&mut self) {
        self.free.clear();
        self.pooled = 0;
        self.high_water = self.live;
    }
}

/// Gives `buf` back for reuse (or frees it when it is small, not the pool's, or the pool is full).
pub(crate) fn recycle(buf: Vec<f32>) {
    if class_of(&buf, buf.capacity()).is_none() {
        return;
    }
    if let Ok(mut guard) = POOL.lock() {
        guard.get_or_insert_with(Pool::new).give(buf);
    }
}

/// Frees every pooled buffer: call it where the shapes a program allocates change (from
/// training steps to evaluation batches and back), so that one phase's spare buffers do not
/// sit beside the next phase's live ones.
pub fn release_all() {
    if let Ok(mut guard) = POOL.lock() {
        if let Some(pool) = guard.as_mut() {
            pool.clear();
        }
    }
}

/// Runs `f` with a thread-local buffer of `len` floats starting on a 64-byte boundary (so that
/// no vector load straddles two cache lines), kept from call to call: for kernels that need
/// scratch on every call and must not pay an allocation (and the allocator's page faults and
/// returns of memory to the system) each time. Its contents are whatever the last user left.
/// The kernels that use it never call back into rayon, so the buffer is never borrowed twice;
/// should that change, a nested call gets a fresh buffer.
pub(crate) fn with_thread_buffer<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let aligned = |buf: &mut Vec<f32>| -> std::ops::Range<usize> {
        if buf.len() < len + 16 {
            buf.resize(len + 16, 0.0);
        }
        let skip = buf.as_ptr().align_offset(64);
        skip..skip + len
    };
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let range = aligned(&mut buf);
            f(&mut buf[range])
        }
        Err(_) => {
            let mut buf = Vec::new();
            let range = aligned(&mut buf);
            f(&mut buf[range])
        }
    })
}

/// A scratch buffer from the pool that goes back to it when dropped.
#[derive(Debug)]
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

    /// A buffer as the pool's callers get one: from the pool, or fresh on a miss.
    fn request(pool: &mut Pool, len: usize) -> Vec<f32> {
        pool.take(len).unwrap_or_else(|| fresh(len, 0.0))
    }

    #[test]
    fn size_classes_round_up_by_at_most_a_quarter() {
        for len in [MIN_LEN, MIN_LEN + 1, 98_304, 98_305, 1_409_024, (1 << 22) - 1, 1 << 22] {
            let class = size_class(len);
            assert!(class >= len && class * 4 <= len * 5 + 4, "{len} -> {class}");
            assert_eq!(size_class(class), class, "a class is its own class");
        }
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((1 << 20) + 1), 5 << 18);
    }

    /// A step that repeats (the same requests and releases in the same order) is served by the
    /// buffers of the first one: no allocation after warm-up.
    #[test]
    fn a_repeated_step_reuses_the_first_steps_buffers() {
        let mut pool = Pool::new();
        let sizes = [1 << 20, 3 << 18, 1 << 20, 5 << 17, 1 << 21];
        let step = |pool: &mut Pool| -> Vec<*const f32> {
            let held: Vec<Vec<f32>> = sizes.iter().map(|&n| request(pool, n)).collect();
            let ptrs = held.iter().map(|b| b.as_ptr()).collect();
            // Some are released and asked for again within the step, in another size.
            let mut held = held.into_iter();
            pool.give(held.next().unwrap());
            let again = request(pool, (1 << 20) - 100);
            held.for_each(|b| pool.give(b));
            pool.give(again);
            ptrs
        };
        let first = step(&mut pool);
        for _ in 0..3 {
            let mut later = step(&mut pool);
            let mut want = first.clone();
            later.sort();
            want.sort();
            assert_eq!(later, want, "every buffer comes from the pool");
        }
        assert_eq!(pool.live, 0);
    }

    /// A miss evicts pooled buffers only while live and pooled memory would exceed the
    /// high-water mark of live memory by more than a quarter; small or foreign buffers are
    /// not kept.
    #[test]
    fn misses_stay_within_the_budget_and_foreign_buffers_are_not_kept() {
        let mut pool = Pool::new();
        let peak: Vec<Vec<f32>> = (0..4).map(|_| request(&mut pool, 1 << 20)).collect();
        assert_eq!(pool.high_water, 4 << 20);
        peak.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.pooled, 4 << 20);
        // Other sizes now: up to a quarter above the mark, the pooled buffers stay.
        let other = request(&mut pool, 1 << 19);
        assert_eq!(pool.pooled, 4 << 20, "within budget: nothing evicted");
        let more = request(&mut pool, 3 << 20);
        assert!(pool.live + pool.pooled <= pool.high_water + pool.high_water / 4, "evicted down to the budget");
        pool.give(other);
        pool.give(more);
        pool.give(vec![1.0; 10]);
        pool.give(vec![1.0; (1 << 20) + 3]);
        assert!(!pool.free.contains_key(&10) && !pool.free.contains_key(&((1 << 20) + 3)), "not the pool's own");
    }

    #[test]
    fn zeroed_and_filled_hand_out_what_they_promise() {
        let len = MIN_LEN + 12_345;
        let mut buf = zeroed(len);
        buf.fill(7.0);
        recycle(buf);
        let again = zeroed(len);
        assert!(again.len() == len && again.iter().all(|&v| v == 0.0), "zeroed, whatever it held");
        let other = filled(len, 2.5);
        assert!(other.len() == len && other.iter().all(|&v| v == 2.5));
        let scratch = overwritten(len + 7);
        assert_eq!(scratch.len(), len + 7);
    }
}
