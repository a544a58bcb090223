//! The built-in simulator's settings, from `[simulator]` in a campaign file or from `simulate`'s flags.

use std::path::Path;
use std::time::Duration;

use super::file::SimulatorTable;
use super::values::{duration_of, int, positive_u32, relative_to};
use crate::cli::SimulateArgs;
use crate::error::{Error, Result};
use crate::simulator::SimSettings;

pub(super) fn sim_settings(t: SimulatorTable, base: Option<&Path>) -> Result<SimSettings> {
    let d = SimSettings::default();
    let lines = match t.lines {
        None => d.lines,
        Some(n) => positive_u32(n, "campaign key simulator.lines")?,
    };
    let dur = |v: Option<String>, key: &str, default: Duration| {
        duration_of(
            v.map(|s| (s, format!("campaign key simulator.{key}"))),
            default,
        )
    };
    Ok(SimSettings {
        lines,
        ring_delay: dur(t.ring_delay, "ring-delay", d.ring_delay)?,
        call_duration: dur(t.call_duration, "call-duration", d.call_duration)?,
        retry_delay: dur(t.retry_delay, "retry-delay", d.retry_delay)?,
        scenario: t.scenario.map(|p| relative_to(base, p)),
        record: t.record.map(|p| relative_to(base, p)),
        faults: Default::default(),
        basic_auth: None,
        tls: None,
        remember: false,
    })
}

/// Settings for `ivr-campaign simulate`.
pub fn sim_settings_from_args(a: &SimulateArgs) -> Result<SimSettings> {
    let d = SimSettings::default();
    let lines = match &a.lines {
        None => d.lines,
        Some(t) => positive_u32(int(t, "--lines")?, "--lines")?,
    };
    let dur = |v: &Option<String>, key: &str, default: Duration| {
        duration_of(v.clone().map(|s| (s, format!("--{key}"))), default)
    };
    Ok(SimSettings {
        lines,
        ring_delay: dur(&a.ring_delay, "ring-delay", d.ring_delay)?,
        call_duration: dur(&a.call_duration, "call-duration", d.call_duration)?,
        retry_delay: dur(&a.retry_delay, "retry-delay", d.retry_delay)?,
        scenario: a.scenario.clone(),
        record: a.record.clone(),
        faults: crate::simulator::scenario::FaultFlags {
            seed: a.seed,
            call_unavailable: a.fault_call_unavailable,
            call_refused: a.fault_call_refused,
            call_drop: a.fault_call_drop,
            call_error: a.fault_call_error,
            call_reworded: a.fault_call_reworded,
            status_error: a.fault_status_error,
            status_garbage: a.fault_status_garbage,
            slow: a.fault_slow.clone(),
            slow_rate: a.fault_slow_rate,
            outages: a.fault_outage.clone(),
            restart_after: a.fault_restart_after.clone(),
        },
        basic_auth: a.basic_auth.clone(),
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return Err(Error::Usage("--tls-cert and --tls-key go together".into())),
        },
        remember: false,
    })
}
