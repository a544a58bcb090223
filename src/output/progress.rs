//! Progress while a run goes: a bar on a terminal, a log line every 10 s with `--progress always`, nothing
//! otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::engine::Stats;

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A bar on a terminal, nothing otherwise.
    Auto,
    /// A bar on a terminal, a log line every 10 s otherwise.
    Always,
    Never,
}

impl std::str::FromStr for Progress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Progress::Auto),
            "always" => Ok(Progress::Always),
            "never" => Ok(Progress::Never),
            _ => Err(format!(
                "{s:?} is not a progress mode; use auto, always or never"
            )),
        }
    }
}

/// Shows progress until dropped.
pub struct Shown(
    Option<tokio::task::JoinHandle<()>>,
    Option<indicatif::ProgressBar>,
);

impl Drop for Shown {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
        if let Some(b) = &self.1 {
            b.finish_and_clear();
        }
    }
}

/// Starts showing progress towards `total` calls.
pub fn show(mode: Progress, total: u64, stats: Arc<Stats>) -> Shown {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if mode == Progress::Never || total == 0 {
        return Shown(None, None);
    }
    let started = Instant::now();
    let line = move |s: &Stats| {
        let (m, f, o) = (
            Stats::get(&s.made),
            Stats::get(&s.failed),
            Stats::get(&s.other_final),
        );
        let dialed = Stats::get(&s.dialed);
        let rate = dialed as f64 / started.elapsed().as_secs_f64().max(0.001);
        (
            m + f + o,
            format!(
                "dialed {dialed} · made {m} · failed {f} · other {o} · in flight {} · {rate:.2} calls/s",
                Stats::get(&s.in_flight)
            ),
        )
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(5));
    if !bar.is_hidden() {
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        crate::logging::set_bar(bar.clone());
        let b = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                let (done, msg) = line(&stats);
                b.set_position(done);
                b.set_message(msg);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        return Shown(Some(task), Some(bar));
    }
    if mode == Progress::Always {
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let (done, msg) = line(&stats);
                info!("progress {done}/{total} · {msg}");
            }
        });
        return Shown(Some(task), None);
    }
    Shown(None, None)
}
