//! Validated settings: what each setting does, in one place. Flags and the campaign file merge here, before
//! any I/O, into one [`RunConfig`]; nothing below `commands` sees clap or TOML types.
//!
//! - [`file`]: the campaign file's schema (unknown keys are an error: a misspelt `rate` must not fall back to a
//!   default without anyone noticing).
//! - `merge`: flags over the file, each setting defaulted and checked.
//! - `request`: what a call request carries besides the number.
//! - [`recall`]: which outcomes are called again, when, how often.
//! - [`reminders`]: a rolling export of appointments, each reminded relative to its own time.
//! - [`gateways`]: gateway URLs, keys, lines, credentials.
//! - [`paths`]: where the files are, and the guard against a run overwriting what it reads.
//! - [`simulator`]: the built-in simulator's settings.
//! - `values`: reading one value from a flag or a key, named as the operator wrote it.

use std::path::PathBuf;
use std::time::Duration;

pub mod file;
pub mod gateways;
mod merge;
pub mod paths;
pub mod recall;
pub mod reminders;
mod request;
pub mod simulator;
mod values;

pub use crate::types::{NumberFormat, Rate, Secret, parse_duration};
pub use gateways::{GatewaySpec, GatewayTarget, gateway_key, gateway_key_of, parse_gateway_url};
pub use paths::{default_output, default_state_dir};
pub use recall::Recall;
pub use simulator::sim_settings_from_args;

/// Everything `run` needs, validated, grouped by what each part governs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The files the campaign reads and writes.
    pub files: Files,
    /// How the contact list is read.
    pub list: ListSettings,
    /// At least one; calls are spread over them.
    pub gateways: Vec<GatewaySpec>,
    /// Gateways no longer listed whose open calls are to be written off as `unknown` (their keys).
    pub forget_gateways: Vec<String>,
    /// What each call request is.
    pub call: CallSettings,
    /// How fast requests and polls go, and how long each may take.
    pub pacing: Pacing,
    /// Who may be called, and when.
    pub rules: RuleSettings,
    /// Which outcomes are called again, when, and how often (none by default).
    pub recall: Option<Recall>,
    /// A rolling export of appointments, each reminded at its own times (`None`: a fixed list).
    pub reminders: Option<reminders::Reminders>,
    /// Judge every row and forecast; call nobody.
    pub dry_run: bool,
}

/// The files a campaign reads and writes (the suppression lists are with the rules).
#[derive(Debug, Clone)]
pub struct Files {
    pub input: PathBuf,
    pub output: PathBuf,
    /// The journal's directory.
    pub state_dir: PathBuf,
    /// The cap ledger shared by campaigns.
    pub ledger: PathBuf,
    pub summary_json: Option<PathBuf>,
    /// Prometheus text file written at the end of every run, for node_exporter's textfile collector.
    pub metrics_file: Option<PathBuf>,
    /// The campaign file, when one was given: the name monitoring knows the campaign by.
    pub campaign_file: Option<PathBuf>,
}

/// How the contact list is read and its numbers judged.
#[derive(Debug, Clone)]
pub struct ListSettings {
    /// `None`: the first common phone column name found.
    pub phone_column: Option<String>,
    pub encoding: crate::contacts::EncodingChoice,
    pub delimiter: Option<u8>,
    /// Region of numbers written without a country code.
    pub default_region: crate::contacts::Region,
    pub timezone_column: Option<String>,
}

/// What each call request is: the app, its fields, how long the gateway keeps trying, what is kept of it.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub app: String,
    /// What each call request carries besides the number (caller ID, detection, the contact's own data).
    pub request: crate::fields::RequestFields,
    /// Minutes the gateway keeps retrying a call.
    pub firstocc: u32,
    pub number_format: NumberFormat,
    pub response_keys: Vec<String>,
    pub keep_records: bool,
    /// The longest a call is expected to take once answered: part of the window's margin.
    pub call_length: Duration,
}

/// Rates, lines and time limits.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// The campaign's total rate of call requests, across its gateways.
    pub rate: Rate,
    /// Lines of each gateway that does not set its own.
    pub lines: u32,
    pub poll_interval: Duration,
    pub poll_rate: Rate,
    pub poll_timeout: Duration,
    pub request_retries: u32,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_outage: Duration,
}

/// Who may be called, and when: the window in each recipient's zone, suppression, the cap per number.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    /// The calling window; its margin is `firstocc` + `call_length`.
    pub window: Option<crate::rules::window::Window>,
    /// The campaign's zone, for recipients whose own cannot be told (never the machine's).
    pub timezone: Option<jiff::tz::TimeZone>,
    /// The campaign zone's IANA name.
    pub timezone_name: Option<String>,
    /// Outside the window: wait for it (true) or stop with work left (false).
    pub wait_for_window: bool,
    pub suppress: Vec<PathBuf>,
    /// Region for numbers without a country code in the suppression lists.
    pub suppress_region: crate::contacts::Region,
    /// Most calls per number within a period, across campaigns.
    pub cap: Option<(u32, Duration)>,
}

/// How long after `firstocc` runs out we keep polling: the gateway's last attempt may still be on the line.
pub const POLL_GRACE: Duration = Duration::from_secs(5 * 60);

impl RunConfig {
    /// How the contact list is to be read.
    pub fn read_options(&self) -> crate::contacts::ReadOptions {
        crate::contacts::ReadOptions {
            encoding: self.list.encoding,
            delimiter: self.list.delimiter,
            phone_column: self.list.phone_column.clone(),
            timezone_column: self.list.timezone_column.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
