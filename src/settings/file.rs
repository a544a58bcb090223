//! The campaign file's schema. Keys match the flags (kebab-case); unknown keys are an error, because a
//! misspelt `rate` must not fall back to a default without anyone noticing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The campaign file. Keys match the flags (kebab-case).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct CampaignFile {
    pub(super) input: Option<PathBuf>,
    pub(super) output: Option<PathBuf>,
    pub(super) gateway: Option<String>,
    pub(super) gateways: Option<Vec<GatewayTable>>,
    pub(super) app: Option<String>,
    pub(super) rate: Option<String>,
    pub(super) lines: Option<i64>,
    pub(super) poll_interval: Option<String>,
    pub(super) poll_rate: Option<String>,
    pub(super) poll_timeout: Option<String>,
    pub(super) state: Option<PathBuf>,
    pub(super) phone_column: Option<String>,
    pub(super) encoding: Option<String>,
    pub(super) delimiter: Option<String>,
    pub(super) default_region: Option<String>,
    pub(super) suppress_region: Option<String>,
    pub(super) firstocc: Option<i64>,
    pub(super) number_format: Option<String>,
    pub(super) response_keys: Option<Vec<String>>,
    pub(super) keep_records: Option<bool>,
    pub(super) request_retries: Option<i64>,
    pub(super) drain_timeout: Option<String>,
    pub(super) max_outage: Option<String>,
    /// Refused with a reason: redialing is a one-off action of one run, never a standing setting.
    pub(super) redial_unknown: Option<toml::Value>,
    pub(super) request_timeout: Option<String>,
    pub(super) window: Option<String>,
    pub(super) days: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) timezone_column: Option<String>,
    pub(super) skip_dates: Option<Vec<String>>,
    pub(super) outside_window: Option<String>,
    pub(super) call_length: Option<String>,
    pub(super) suppress: Option<Vec<PathBuf>>,
    pub(super) recall_on: Option<Words>,
    pub(super) caller_id: Option<String>,
    pub(super) caller_id_param: Option<String>,
    pub(super) detection: Option<i64>,
    pub(super) detection_param: Option<String>,
    pub(super) fields: Option<toml::Table>,
    pub(super) info: Option<String>,
    pub(super) require_fields: Option<Words>,
    pub(super) recall_unless: Option<Words>,
    pub(super) recall_after: Option<String>,
    pub(super) max_attempts: Option<i64>,
    pub(super) max_calls_per_number: Option<i64>,
    pub(super) per: Option<String>,
    pub(super) ledger: Option<PathBuf>,
    pub(super) dry_run: Option<bool>,
    pub(super) summary_json: Option<PathBuf>,
    pub(super) metrics_file: Option<PathBuf>,
    pub(super) ca_cert: Option<PathBuf>,
    pub(super) gateway_user: Option<String>,
    pub(super) gateway_password_env: Option<String>,
    pub(super) simulator: Option<SimulatorTable>,
    pub(super) key_column: Option<String>,
    pub(super) appointment_column: Option<String>,
    pub(super) appointment_format: Option<String>,
    pub(super) appointment_timezone: Option<String>,
    pub(super) remind_before: Option<Words>,
    pub(super) min_notice: Option<String>,
    pub(super) stop_on: Option<Words>,
    pub(super) skip_if: Option<Words>,
}

/// One `[[gateways]]` entry; what it leaves out comes from the campaign.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct GatewayTable {
    pub(super) url: String,
    pub(super) lines: Option<i64>,
    pub(super) rate: Option<String>,
    pub(super) gateway_user: Option<String>,
    pub(super) gateway_password_env: Option<String>,
    pub(super) ca_cert: Option<PathBuf>,
}

/// A TOML value that may be written as one comma-separated string or as a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Words {
    One(String),
    Many(Vec<String>),
}

impl Words {
    pub(super) fn items(self) -> Vec<String> {
        let all = match self {
            Words::One(s) => vec![s],
            Words::Many(v) => v,
        };
        all.iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// `[simulator]`: used when `gateway = "sim"`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct SimulatorTable {
    pub(super) lines: Option<i64>,
    pub(super) ring_delay: Option<String>,
    pub(super) call_duration: Option<String>,
    pub(super) retry_delay: Option<String>,
    pub(super) scenario: Option<PathBuf>,
    pub(super) record: Option<PathBuf>,
}

pub(super) fn read_campaign(path: &Path) -> Result<CampaignFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoInput(format!("campaign file {} does not exist", path.display()))
        } else {
            Error::Config(format!("cannot read campaign file {}: {e}", path.display()))
        }
    })?;
    toml::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "campaign file {}{}: {}",
            path.display(),
            crate::types::toml_place(&text, e.span()),
            e.message().trim()
        ))
    })
}
