//! Time per op kind, forward and backward, when switched on (`sph bench --profile`).
//!
//! Off by default: each op then pays one relaxed atomic load. When on, the forward time of an
//! op is the time since the previous node was pushed onto a tape (an op's forward runs between
//! two pushes), and its backward time is the time of its backward method. The optimizer step
//! and everything outside a tape are not counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);
static TIMES: Mutex<BTreeMap<&'static str, OpTime>> = Mutex::new(BTreeMap::new());

/// Accumulated time and calls of one op kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpTime {
    /// Time in forward passes.
    pub forward: Duration,
    /// Time in backward passes.
    pub backward: Duration,
    /// Forward calls.
    pub calls: usize,
}

/// Starts collecting afresh (`true`), or stops and keeps what was collected (`false`).
pub fn enable(on: bool) {
    if on {
        if let Ok(mut t) = TIMES.lock() {
            t.clear();
        }
    }
    ON.store(on, Ordering::Relaxed);
}

/// Whether collection is on.
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Adds `elapsed` to op kind `name`, as forward or backward time.
pub(crate) fn add(name: &'static str, elapsed: Duration, backward: bool) {
    if let Ok(mut t) = TIMES.lock() {
        let e = t.entry(name).or_default();
        if backward {
            e.backward += elapsed;
        } else {
            e.forward += elapsed;
            e.calls += 1;
        }
    }
}

/// What was collected since [`enable`], by op kind.
pub fn collected() -> Vec<(&'static str, OpTime)> {
    TIMES.lock().map(|t| t.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default()
}

/// A clock for the forward time of the next node, when collection is on.
pub(crate) fn clock() -> Option<Instant> {
    on().then(Instant::now)
}
