//! Appointment reminders: the rolling export's key, the appointment column and its zone, the touches, and
//! what stops or skips them. Read from flags over the campaign file like every other group.

use jiff::SignedDuration;
use jiff::tz::TimeZone;

use super::file::{CampaignFile, Words};
use super::values::pick;
use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::rules::answers::Answers;
use crate::rules::touches::{Timing, check_format, read_leads, read_span};

/// The default `--min-notice`: no reminder call closer to the appointment than this.
pub const DEFAULT_MIN_NOTICE: SignedDuration = SignedDuration::from_hours(2);

/// A campaign over a rolling export: each run takes a new version of the list, matched by key.
#[derive(Debug, Clone)]
pub struct Reminders {
    /// The column naming a row across exports (an appointment id).
    pub key_column: String,
    /// Appointment timing; `None`: a rolling list whose each new key is called once, as soon as it appears.
    pub appointments: Option<Appointments>,
    /// A made call with one of these answers ends its appointment's remaining touches.
    pub stop_on: Answers,
    /// Rows with one of these column values are withdrawn (`status=Cancelled`).
    pub skip_if: Vec<(String, String)>,
}

/// How appointment times are read and when their touches fall.
#[derive(Debug, Clone)]
pub struct Appointments {
    pub column: String,
    /// strftime format of the cells; `None`: the common formats.
    pub format: Option<String>,
    /// The clinic's zone, in which the export's times are written.
    pub timezone: TimeZone,
    pub timezone_name: String,
    pub timing: Timing,
}

/// `NAME=VALUE` pairs, each checked.
fn pairs(items: Vec<String>, what: &str, example: &str) -> Result<Vec<(String, String)>> {
    items
        .into_iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{what}: {a:?} is not NAME=VALUE; write it like {example}"
                    ))
                })
        })
        .collect()
}

/// The reminder settings, or `None` when the campaign calls a fixed list. `campaign_zone`: the campaign's
/// `timezone`, the default for the export's times.
pub(super) fn reminders_of(
    args: &mut RunArgs,
    file: &mut CampaignFile,
    campaign_zone: Option<(&TimeZone, &str)>,
) -> Result<Option<Reminders>> {
    let key = pick(args.key_column.take(), file.key_column.take(), "key-column");
    let column = pick(
        args.appointment_column.take(),
        file.appointment_column.take(),
        "appointment-column",
    );
    let format = pick(
        args.appointment_format.take(),
        file.appointment_format.take(),
        "appointment-format",
    );
    let zone = pick(
        args.appointment_timezone.take(),
        file.appointment_timezone.take(),
        "appointment-timezone",
    );
    let before = pick(
        args.remind_before.take().filter(|v| !v.is_empty()),
        file.remind_before.take().map(Words::items),
        "remind-before",
    );
    let notice = pick(args.min_notice.take(), file.min_notice.take(), "min-notice");
    let stop_on = pick(
        args.stop_on.take().filter(|v| !v.is_empty()),
        file.stop_on.take().map(Words::items),
        "stop-on",
    );
    let skip_if = pick(
        Some(std::mem::take(&mut args.skip_if)).filter(|v| !v.is_empty()),
        file.skip_if.take().map(Words::items),
        "skip-if",
    );
    let Some((key_column, _)) = key.filter(|(k, _)| !k.trim().is_empty()) else {
        let given = [&column, &format, &zone, &notice]
            .into_iter()
            .flatten()
            .map(|(_, w)| w.clone())
            .chain(before.map(|(_, w)| w))
            .chain(stop_on.map(|(_, w)| w))
            .chain(skip_if.map(|(_, w)| w))
            .next();
        return match given {
            Some(what) => Err(Error::Usage(format!(
                "{what} needs --key-column (the column that names an appointment across exports)"
            ))),
            None => Ok(None),
        };
    };
    let appointments = match column {
        None => {
            if let Some(what) = [format, zone, notice]
                .into_iter()
                .flatten()
                .map(|(_, w)| w)
                .chain(before.map(|(_, w)| w))
                .next()
            {
                return Err(Error::Usage(format!(
                    "{what} needs --appointment-column (the column holding each appointment's date and time)"
                )));
            }
            None
        }
        Some((column, _)) => {
            let (items, what) = before.ok_or_else(|| {
                Error::Usage(
                    "--appointment-column needs --remind-before (the touches, like 48h,24h)".into(),
                )
            })?;
            let leads = read_leads(&items, &what).map_err(Error::Usage)?;
            let min_notice = match notice {
                None => DEFAULT_MIN_NOTICE,
                Some((t, what)) => read_span(&t, &what).map_err(Error::Usage)?,
            };
            if let Some(short) = leads.iter().find(|l| **l <= min_notice) {
                return Err(Error::Usage(format!(
                    "{what}: the lead {} is not longer than the min-notice {}: that touch could never be made",
                    crate::types::Dur(short.unsigned_abs()),
                    crate::types::Dur(min_notice.unsigned_abs())
                )));
            }
            let (timezone, timezone_name) = match (zone, campaign_zone) {
                (Some((name, what)), _) => (
                    crate::zones::zone(&name).map_err(|e| Error::Usage(format!("{what}: {e}")))?,
                    name,
                ),
                (None, Some((tz, name))) => (tz.clone(), name.to_string()),
                (None, None) => {
                    return Err(Error::Usage(
                        "appointment times need a zone: set --appointment-timezone (the clinic's, like America/New_York) or --timezone".into(),
                    ));
                }
            };
            if let Some((f, what)) = &format {
                check_format(f, what).map_err(Error::Usage)?;
            }
            Some(Appointments {
                column,
                format: format.map(|(f, _)| f),
                timezone,
                timezone_name,
                timing: Timing { leads, min_notice },
            })
        }
    };
    Ok(Some(Reminders {
        key_column,
        appointments,
        stop_on: match stop_on {
            Some((v, what)) => Answers::read(&v, &what).map_err(Error::Usage)?,
            None => Answers::default(),
        },
        skip_if: match skip_if {
            Some((v, what)) => pairs(v, &what, "status=Cancelled")?,
            None => Vec::new(),
        },
    }))
}
