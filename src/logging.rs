//! Logs and progress on stderr.
//!
//! Human-readable logs on a terminal, JSON lines (`--log-format json`) for journald and log shippers. Phone
//! numbers are masked to their last four digits unless `--log-full-numbers` is given: logs travel further
//! than results files. When a progress bar is shown, log lines are printed above it.

use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

static BAR: OnceLock<ProgressBar> = OnceLock::new();

pub use crate::privacy::{number, personal};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" | "text" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            _ => Err(format!("{s:?} is not a log format; use human or json")),
        }
    }
}

/// Writes log lines to stderr, above the progress bar when there is one.
#[derive(Clone, Copy)]
pub struct Stderr;

impl Write for Stderr {
    /// A line that cannot be written (stderr closed: `2>&1 | head`, a journald restart) is dropped: logging
    /// must never stop a run.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = match BAR.get() {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| io::stderr().write_all(buf)),
            _ => io::stderr().write_all(buf),
        };
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

/// Installs the subscriber. `verbose`/`quiet` pick the level; `IVR_CAMPAIGN_LOG` (an env-filter) overrides.
pub fn init(verbose: u8, quiet: bool, format: Format, full_numbers: bool) {
    crate::privacy::show_whole(full_numbers);
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "ivr_campaign=debug,info",
        _ => "ivr_campaign=trace,debug",
    };
    let mut filter =
        EnvFilter::try_from_env("IVR_CAMPAIGN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // The number library traces the digits it parses, unmasked: heard only with whole numbers allowed.
    if !full_numbers && let Ok(off) = "rlibphonenumber=off".parse() {
        filter = filter.add_directive(off);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        // Its own report of a failed write goes through `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false)
        .with_target(false);
    match format {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        Format::Human => builder.with_ansi(io::stderr().is_terminal()).init(),
    }
}

/// Registers the progress bar that log lines must be printed above.
pub fn set_bar(bar: ProgressBar) {
    let _ = BAR.set(bar);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_last_four_digits() {
        assert_eq!(number("+14155550123"), "+1******0123");
        assert_eq!(number("02079460018"), "*******0018");
        assert_eq!(number("123"), "123");
    }
}
