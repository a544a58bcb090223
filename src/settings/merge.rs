//! Flags over the campaign file: every setting read, defaulted and checked, before any I/O. One function per
//! group of [`RunConfig`]; each takes what it reads out of the flags and the file, so nothing is read twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{CampaignFile, Words, read_campaign};
use super::gateways::{GatewayInputs, gateway_key_of, gateways_of};
use super::paths::{default_output, default_state_dir, refuse_overwriting};
use super::recall::recall_of;
use super::request::request_fields;
use super::values::{duration_of, int, named, pick, positive_u32, rate_of, relative_to};
use super::*;
use crate::cli::RunArgs;
use crate::error::{Error, Result};

impl RunConfig {
    /// Merges flags over the campaign file and validates everything.
    pub fn from_args(mut args: RunArgs) -> Result<RunConfig> {
        let mut file = match &args.campaign {
            Some(p) => read_campaign(p)?,
            None => CampaignFile::default(),
        };
        refuse_standing_redial(&args, &file)?;
        let base = args
            .campaign
            .as_deref()
            .map(|p| p.parent().unwrap_or(Path::new("")).to_path_buf());
        let base = base.as_deref();
        let request = request_fields(&args, &file)?;
        let mut files = files_of(&mut args, &mut file, base)?;
        let list = list_of(&mut args, &mut file)?;
        let mut pacing = pacing_of(&mut args, &mut file)?;
        let call = call_of(&mut args, &mut file, request)?;
        let rules = rules_of(&mut args, &mut file, &call, base, list.default_region)?;
        pacing.poll_timeout =
            poll_timeout_of(&mut args, &mut file, call.firstocc, pacing.poll_interval)?;
        let recall = recall_of(
            pick(
                args.recall_on.take().filter(|v| !v.is_empty()),
                file.recall_on.take().map(Words::items),
                "recall-on",
            ),
            pick(
                args.recall_unless.take().filter(|v| !v.is_empty()),
                file.recall_unless.take().map(Words::items),
                "recall-unless",
            ),
            pick(
                args.recall_after.take(),
                file.recall_after.take(),
                "recall-after",
            ),
            pick(
                args.max_attempts.take(),
                file.max_attempts.map(|n| n.to_string()),
                "max-attempts",
            ),
        )?;
        let reminders = super::reminders::reminders_of(
            &mut args,
            &mut file,
            rules.timezone.as_ref().zip(rules.timezone_name.as_deref()),
        )?;
        let mut gateway_inputs = GatewayInputs {
            flags: std::mem::take(&mut args.gateway),
            one: file.gateway.take(),
            list: file.gateways.take(),
            simulator: file.simulator.take(),
            user: (args.gateway_user.take(), file.gateway_user.take()),
            password_env: (
                args.gateway_password_env.take(),
                file.gateway_password_env.take(),
            ),
            ca_cert: (args.ca_cert.take(), file.ca_cert.take()),
        };
        let gateways = gateways_of(&mut gateway_inputs, base, pacing.lines, &pacing.rate)?;
        let forget_gateways = args
            .forget_gateway
            .iter()
            .map(|g| gateway_key_of(g).map_err(|e| Error::setting("--forget-gateway", e)))
            .collect::<Result<Vec<_>>>()?;
        let mut read: Vec<(&str, &Path)> = vec![("the cap ledger", files.ledger.as_path())];
        if let Some(c) = &args.campaign {
            read.push(("the campaign file", c.as_path()));
        }
        refuse_overwriting(
            &files.input,
            &files.output,
            &files.state_dir,
            &rules.suppress,
            &read,
            &[
                ("--summary-json", files.summary_json.as_deref()),
                ("--metrics-file", files.metrics_file.as_deref()),
            ],
        )?;
        files.campaign_file = args.campaign.clone();
        Ok(RunConfig {
            files,
            list,
            gateways,
            forget_gateways,
            call,
            pacing,
            rules,
            recall,
            reminders,
            dry_run: args.dry_run || file.dry_run.unwrap_or(false),
        })
    }
}

/// Redialing is a one-off action of one run, never a standing setting, and no longer a flag of `run`.
fn refuse_standing_redial(args: &RunArgs, file: &CampaignFile) -> Result<()> {
    if file.redial_unknown.is_some() {
        return Err(Error::Config(
            "campaign key redial-unknown is not a setting: calling unknown contacts again is a one-off action that can call people twice. Remove the key; after checking the gateway, run `ivr-campaign redial-unknown` once".into(),
        ));
    }
    if args.redial_unknown {
        return Err(Error::Usage(
            "--redial-unknown is a command of its own now, so that running the same command again never repeats it: `ivr-campaign redial-unknown CAMPAIGN [--rows N,M]` marks them once, and the next run calls them".into(),
        ));
    }
    Ok(())
}

fn files_of(args: &mut RunArgs, file: &mut CampaignFile, base: Option<&Path>) -> Result<Files> {
    let input = args
        .input
        .take()
        .or_else(|| file.input.take().map(|p| relative_to(base, p)))
        .ok_or_else(|| {
            Error::Usage(
                "no contact list: give --input FILE or set input in the campaign file".into(),
            )
        })?;
    let output = args
        .output
        .take()
        .or_else(|| file.output.take().map(|p| relative_to(base, p)))
        .unwrap_or_else(|| default_output(&input));
    let state_dir = args
        .state
        .take()
        .or_else(|| file.state.take().map(|p| relative_to(base, p)))
        .unwrap_or_else(|| default_state_dir(&output));
    let beside = |flag: Option<PathBuf>, key: Option<PathBuf>| {
        flag.or_else(|| key.map(|p| relative_to(base, p)))
    };
    Ok(Files {
        input,
        output,
        state_dir,
        ledger: beside(args.ledger.take(), file.ledger.take())
            .unwrap_or_else(crate::rules::ledger::default_path),
        summary_json: beside(args.summary_json.take(), file.summary_json.take()),
        metrics_file: beside(args.metrics_file.take(), file.metrics_file.take()),
        campaign_file: None,
    })
}

fn list_of(args: &mut RunArgs, file: &mut CampaignFile) -> Result<ListSettings> {
    let phone_column = pick(
        args.phone_column.take(),
        file.phone_column.take(),
        "phone-column",
    )
    .map(|(c, _)| c.trim().to_string())
    .filter(|c| !c.is_empty());
    let encoding = match pick(args.encoding.take(), file.encoding.take(), "encoding") {
        None => crate::contacts::EncodingChoice::Auto,
        Some((t, what)) => t.parse().map_err(|e| Error::setting(&what, e))?,
    };
    let delimiter = match pick(args.delimiter.take(), file.delimiter.take(), "delimiter") {
        None => None,
        Some((t, what)) => {
            Some(crate::contacts::parse_delimiter(&t).map_err(|e| Error::setting(&what, e))?)
        }
    };
    let default_region = region(pick(
        args.default_region.take(),
        file.default_region.take(),
        "default-region",
    ))?
    .unwrap_or(crate::contacts::Region::US);
    let timezone_column = pick(
        args.timezone_column.take(),
        file.timezone_column.take(),
        "timezone-column",
    )
    .map(|(c, _)| c);
    Ok(ListSettings {
        phone_column,
        encoding,
        delimiter,
        default_region,
        timezone_column,
    })
}

fn region(v: Option<(String, String)>) -> Result<Option<crate::contacts::Region>> {
    match v {
        None => Ok(None),
        Some((r, what)) => crate::contacts::region(&r).map(Some).ok_or_else(|| {
            Error::Usage(format!(
                "{what}: {r:?} is not a region code; use a two-letter ISO code like US or GB"
            ))
        }),
    }
}

/// Rates, lines and time limits; the poll timeout is set once `firstocc` is known ([`poll_timeout_of`]).
fn pacing_of(args: &mut RunArgs, file: &mut CampaignFile) -> Result<Pacing> {
    let rate = rate_of(
        pick(args.rate.take(), file.rate.take(), "rate"),
        Rate::Limited {
            count: 1,
            per: Duration::from_secs(1),
        },
    )?;
    let lines = match pick(
        args.lines.take(),
        file.lines.map(|n| n.to_string()),
        "lines",
    ) {
        None => 4,
        Some((t, what)) => positive_u32(int(&t, &what)?, &what)?,
    };
    let poll_interval = duration_of(
        pick(
            args.poll_interval.take(),
            file.poll_interval.take(),
            "poll-interval",
        ),
        Duration::from_secs(5),
    )?;
    let poll_rate = rate_of(
        pick(args.poll_rate.take(), file.poll_rate.take(), "poll-rate"),
        Rate::Limited {
            count: 10,
            per: Duration::from_secs(1),
        },
    )?;
    let request_retries = match pick(
        args.request_retries.take(),
        file.request_retries.map(|n| n.to_string()),
        "request-retries",
    ) {
        None => 3,
        Some((t, what)) => {
            let n = int(&t, &what)?;
            u32::try_from(n)
                .map_err(|_| Error::Usage(format!("{what}: must be 0 or more, not {n}")))?
        }
    };
    let drain_timeout = duration_of(
        pick(
            args.drain_timeout.take(),
            file.drain_timeout.take(),
            "drain-timeout",
        ),
        Duration::from_secs(120),
    )?;
    let max_outage = duration_of(
        pick(args.max_outage.take(), file.max_outage.take(), "max-outage"),
        Duration::from_secs(600),
    )?;
    let request_timeout = duration_of(
        pick(
            args.request_timeout.take(),
            file.request_timeout.take(),
            "request-timeout",
        ),
        Duration::from_secs(15),
    )?;
    if request_timeout.is_zero() {
        return Err(Error::Usage("request-timeout: must be above zero".into()));
    }
    Ok(Pacing {
        rate,
        lines,
        poll_interval,
        poll_rate,
        poll_timeout: Duration::ZERO,
        request_retries,
        request_timeout,
        drain_timeout,
        max_outage,
    })
}

/// How long a call is polled before it is written off: by default the gateway's retries plus a grace.
fn poll_timeout_of(
    args: &mut RunArgs,
    file: &mut CampaignFile,
    firstocc: u32,
    poll_interval: Duration,
) -> Result<Duration> {
    let given = pick(
        args.poll_timeout.take(),
        file.poll_timeout.take(),
        "poll-timeout",
    );
    let named = given
        .as_ref()
        .map_or("poll-timeout".to_string(), |(_, w)| w.clone());
    let poll_timeout = duration_of(
        given,
        Duration::from_secs(u64::from(firstocc) * 60) + POLL_GRACE,
    )?;
    if poll_timeout < poll_interval || poll_timeout.is_zero() {
        // Every call would be requested and written off before its first status read.
        return Err(Error::Usage(format!(
            "{named} ({}) must be at least the poll interval ({}): a call is written off only after a status read",
            crate::types::Dur(poll_timeout),
            crate::types::Dur(poll_interval)
        )));
    }
    Ok(poll_timeout)
}

fn call_of(
    args: &mut RunArgs,
    file: &mut CampaignFile,
    request: crate::fields::RequestFields,
) -> Result<CallSettings> {
    let (app, _) = pick(args.app.take(), file.app.take(), "app").ok_or_else(|| {
        Error::Usage("no IVR app: give --app NAME or set app in the campaign file (the name deployed on the gateway)".into())
    })?;
    if app.trim().is_empty() {
        return Err(Error::Usage("--app: the IVR app name is empty".into()));
    }
    let firstocc = match pick(
        args.firstocc.clone(),
        file.firstocc.map(|n| n.to_string()),
        "firstocc",
    ) {
        None => 10,
        Some((t, what)) => positive_u32(int(&t, &what)?, &what)?,
    };
    let number_format = match pick(
        args.number_format.take(),
        file.number_format.take(),
        "number-format",
    ) {
        None => NumberFormat::E164,
        Some((t, what)) => t.parse().map_err(|e| Error::setting(&what, e))?,
    };
    let response_keys = args
        .response_keys
        .take()
        .or(file.response_keys.take())
        .unwrap_or_default()
        .into_iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    let call_length = duration_of(
        pick(
            args.call_length.clone(),
            file.call_length.clone(),
            "call-length",
        ),
        Duration::from_secs(120),
    )?;
    Ok(CallSettings {
        app: app.trim().to_string(),
        request,
        firstocc,
        number_format,
        response_keys,
        keep_records: args.keep_records || file.keep_records.unwrap_or(false),
        call_length,
    })
}

/// The window (with its margin: the gateway's retries plus a call's length), zones, suppression, the cap.
fn rules_of(
    args: &mut RunArgs,
    file: &mut CampaignFile,
    call: &CallSettings,
    base: Option<&Path>,
    default_region: crate::contacts::Region,
) -> Result<RuleSettings> {
    let firstocc_named = named(args.firstocc.is_some(), file.firstocc.is_some(), "firstocc");
    let call_length_named = named(
        args.call_length.is_some(),
        file.call_length.is_some(),
        "call-length",
    );
    let (firstocc, call_length) = (call.firstocc, call.call_length);
    let days = match pick(args.days.take(), file.days.take(), "days") {
        None => None,
        Some((t, what)) => {
            Some(crate::rules::window::parse_days(&t).map_err(|e| Error::setting(&what, e))?)
        }
    };
    let skip = match (args.skip_dates.is_empty(), file.skip_dates.take()) {
        (false, _) => crate::rules::window::parse_dates(&args.skip_dates)
            .map_err(|e| Error::setting("--skip-dates", e))?,
        (true, Some(d)) => crate::rules::window::parse_dates(&d)
            .map_err(|e| Error::setting("campaign key skip-dates", e))?,
        (true, None) => Vec::new(),
    };
    let margin = Duration::from_secs(u64::from(firstocc) * 60) + call_length;
    let window = match (
        pick(args.window.take(), file.window.take(), "window"),
        days,
        skip.is_empty(),
    ) {
        (None, None, true) => None,
        (None, d, _) => Some(
            crate::rules::window::Window::parse("00:00-24:00", d.unwrap_or([true; 7]), margin)
                .map_err(|e| Error::Internal(e.to_string()))?,
        ),
        (Some((t, what)), d, _) => Some(
            crate::rules::window::Window::parse(&t, d.unwrap_or([true; 7]), margin)
                .map_err(|e| Error::setting(&what, e))?,
        ),
    }
    .map(|mut w| {
        w.skip = skip;
        w
    });
    if let Some(w) = window.as_ref().filter(|w| !w.leaves_room()) {
        return Err(Error::Config(format!(
            "{firstocc_named} ({firstocc} minutes of gateway retries) plus {call_length_named} ({}) is the time a call needs before the window closes, and the calling window {} is only {} long: nobody could ever be called. Shorten {call_length_named} or {firstocc_named}, or widen the window",
            crate::types::humanize(call_length),
            w.describe(),
            crate::types::humanize(w.length())
        )));
    }
    // Never the machine's zone: a nightly server on UTC would call New York at 4 a.m. Without a campaign
    // zone, recipients are placed by their column or their number, or not called.
    let (timezone, timezone_name) =
        match pick(args.timezone.take(), file.timezone.take(), "timezone") {
            Some((t, what)) => (
                Some(crate::zones::zone(&t).map_err(|e| Error::setting(&what, e))?),
                Some(t.trim().to_string()),
            ),
            None => (None, None),
        };
    let wait_for_window = match pick(
        args.outside_window.take(),
        file.outside_window.take(),
        "outside-window",
    ) {
        None => false,
        Some((t, what)) => match t.trim() {
            "wait" => true,
            "stop" => false,
            _ => return Err(Error::Usage(format!("{what}: {t:?} is not wait or stop"))),
        },
    };
    let suppress = if args.suppress.is_empty() {
        file.suppress
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|p| relative_to(base, p))
            .collect()
    } else {
        std::mem::take(&mut args.suppress)
    };
    let suppress_region = region(pick(
        args.suppress_region.take(),
        file.suppress_region.take(),
        "suppress-region",
    ))?
    .unwrap_or(default_region);
    let cap = match (
        pick(
            args.max_calls_per_number.take(),
            file.max_calls_per_number.map(|n| n.to_string()),
            "max-calls-per-number",
        ),
        pick(args.per.take(), file.per.take(), "per"),
    ) {
        (None, None) => None,
        (Some((n, what)), Some(per)) => {
            let (text, per_what) = per.clone();
            let period = duration_of(Some(per), Duration::ZERO)?;
            if period.is_zero() {
                return Err(Error::Usage(format!(
                    "{per_what}: {text:?} is no period at all, so the cap would hold nothing back; give one like 24h"
                )));
            }
            Some((positive_u32(int(&n, &what)?, &what)?, period))
        }
        (Some(_), None) => {
            return Err(Error::Usage(
                "--max-calls-per-number needs --per (e.g. --per 24h)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(Error::Usage("--per needs --max-calls-per-number".into()));
        }
    };
    Ok(RuleSettings {
        window,
        timezone,
        timezone_name,
        wait_for_window,
        suppress,
        suppress_region,
        cap,
    })
}
