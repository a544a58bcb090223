//! What a run leaves to chance, in one place, so that the simulation tier can pin it down and replay a seed
//! bit for bit: where blocking work runs, and the few random numbers a run draws.
//!
//! A run hands blocking work (SQLite) to tokio's blocking pool, so no task waits on a disk; but a thread of
//! the pool finishes in an order the OS picks, and the tasks that run meanwhile differ from one run to the
//! next. Under [`pin`], on a current-thread runtime, that work runs inline instead: one thread, one order.
//! Likewise a signal heard by many tasks wakes them in one order ([`watch`]).

use std::cell::{Cell, RefCell};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub mod watch;

thread_local! {
    static PINNED: Cell<bool> = const { Cell::new(false) };
    static RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// From now on, on this thread: blocking work runs inline and random numbers come from `seed`.
pub fn pin(seed: u64) {
    PINNED.with(|p| p.set(true));
    RNG.with(|r| *r.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Whether this thread is pinned.
pub fn pinned() -> bool {
    PINNED.with(Cell::get)
}

/// Runs blocking `f`: on the blocking pool, or inline when pinned. `Err` if it panicked.
pub async fn unblock<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if pinned() {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|_| "blocking work panicked".to_string());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

/// A random number: from the pinned seed, or from the OS.
pub fn random_u64() -> u64 {
    RNG.with(|r| match r.borrow_mut().as_mut() {
        Some(rng) => rng.random(),
        None => rand::rng().random(),
    })
}

/// Where the simulation tier can make the process die, as a SIGKILL would there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A group of journal writes is about to be committed: it never is.
    BeforeCommit,
    /// A group of journal writes is committed (on disk) and not yet acknowledged: nobody hears of it.
    AfterCommit,
}

thread_local! {
    /// The crash to come: at the `n`-th time (0-based) a point of this kind is passed.
    static CRASH_AT: Cell<Option<(Point, u64)>> = const { Cell::new(None) };
    static PASSED: Cell<[u64; 2]> = const { Cell::new([0; 2]) };
    static CRASHED: Cell<bool> = const { Cell::new(false) };
    static CRASH: std::sync::Arc<tokio::sync::Notify> = std::sync::Arc::new(tokio::sync::Notify::new());
}

/// Arms a crash at the `n`-th passing of `point` (0-based) on this thread, and forgets any earlier crash.
pub fn arm_crash(point: Option<(Point, u64)>) {
    CRASH_AT.with(|c| c.set(point));
    PASSED.with(|p| p.set([0; 2]));
    CRASHED.with(|c| c.set(false));
}

/// Passes `point`: true when the process is to die here (and from now on everything it does is lost).
pub fn fail_point(point: Point) -> bool {
    if !pinned() {
        return false;
    }
    if crashed() {
        return true;
    }
    let i = match point {
        Point::BeforeCommit => 0,
        Point::AfterCommit => 1,
    };
    let passed = PASSED.with(|p| {
        let mut v = p.get();
        let n = v[i];
        v[i] += 1;
        p.set(v);
        n
    });
    if CRASH_AT.with(Cell::get) == Some((point, passed)) {
        crash();
        return true;
    }
    false
}

/// The process dies now (the simulated gateway calls it when a crash is due while a request is on its way).
pub fn crash() {
    CRASHED.with(|c| c.set(true));
    CRASH.with(|n| n.notify_one());
}

/// Whether the process has died.
pub fn crashed() -> bool {
    CRASHED.with(Cell::get)
}

/// Resolves when the process dies.
pub async fn death() {
    let notify = CRASH.with(std::sync::Arc::clone);
    if crashed() {
        return;
    }
    notify.notified().await;
}

thread_local! {
    /// The simulation's boot clock: the true time of the simulated machine, which a wall-clock step does not
    /// move.
    static BOOT: RefCell<Option<Box<dyn Fn() -> i64>>> = const { RefCell::new(None) };
}

/// Sets the boot clock the simulation tier gives this thread (`None`: the machine's own).
pub fn set_boot_clock(clock: Option<Box<dyn Fn() -> i64>>) {
    BOOT.with(|b| *b.borrow_mut() = clock);
}

/// The simulation's boot clock, if it set one.
pub fn simulated_boot_clock() -> Option<(String, i64)> {
    BOOT.with(|b| b.borrow().as_ref().map(|f| ("simulated".to_string(), f())))
}

/// The machine's boot and the time since it (ms) on a clock that counts suspended time and that no step of
/// the wall clock moves (Linux: `/proc/sys/kernel/random/boot_id` and `/proc/uptime`, which reads
/// `CLOCK_BOOTTIME`). Two readings with the same boot id measure the time between two runs whatever the wall
/// clock did meanwhile. `None` where the system does not say.
pub fn boot_clock() -> Option<(String, i64)> {
    if let Some(b) = simulated_boot_clock() {
        return Some(b);
    }
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    Some((id.trim().to_string(), (secs * 1000.0) as i64))
}
