//! Validated settings. Flags and the campaign TOML merge here, before any I/O, into one [`RunConfig`]; the
//! engine never sees clap or TOML types. Unknown TOML keys are an error: a misspelt `rate` must not fall back
//! to a default without anyone noticing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{RunArgs, SimulateArgs};
use crate::error::{Error, Result};
use crate::simulator::SimSettings;
pub use crate::types::{NumberFormat, Rate, Secret, parse_duration};

/// Where the calls go.
#[derive(Debug, Clone)]
pub enum GatewayTarget {
    Url(reqwest::Url),
    /// Start the simulator in-process on a free loopback port.
    Simulator(Box<SimSettings>),
}

/// One gateway of a campaign.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub target: GatewayTarget,
    /// How the journal, the results and the logs name it: the URL without credentials (and without a lone
    /// trailing `/`), or `sim`, `sim-2`, … for simulators in the order listed.
    pub key: String,
    /// Its lines: the most calls outstanding on it.
    pub lines: u32,
    /// Its own cap on call requests, besides the campaign's total `rate`.
    pub rate: Option<Rate>,
    /// Extra CA certificate (PEM) to trust for an https gateway, e.g. a proxy with an internal CA.
    pub ca_cert: Option<PathBuf>,
    /// Basic-auth user and password for a gateway behind a proxy.
    pub auth: Option<(String, Secret)>,
}

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    pub state_dir: PathBuf,
    /// At least one; calls are spread over them.
    pub gateways: Vec<GatewaySpec>,
    /// Gateways no longer listed whose open calls are to be written off as `unknown` (their keys).
    pub forget_gateways: Vec<String>,
    pub app: String,
    /// The campaign's total rate of call requests, across its gateways.
    pub rate: Rate,
    /// Lines of each gateway that does not set its own.
    pub lines: u32,
    pub poll_interval: Duration,
    pub poll_rate: Rate,
    pub poll_timeout: Duration,
    /// `None`: the first common phone column name found.
    pub phone_column: Option<String>,
    pub encoding: crate::contacts::EncodingChoice,
    pub delimiter: Option<u8>,
    pub default_region: crate::contacts::Region,
    /// Region for numbers without a country code in the suppression lists.
    pub suppress_region: crate::contacts::Region,
    /// Which outcomes are called again, when, and how often (none by default).
    pub recall: Option<crate::engine::Recall>,
    /// What each call request carries besides the number (caller ID, detection, the contact's own data).
    pub request: crate::fields::RequestFields,
    pub firstocc: u32,
    pub number_format: NumberFormat,
    pub response_keys: Vec<String>,
    pub keep_records: bool,
    pub request_retries: u32,
    pub drain_timeout: Duration,
    pub max_outage: Duration,
    pub request_timeout: Duration,
    /// The calling window; its margin is `firstocc` + `call_length`.
    pub window: Option<crate::rules::window::Window>,
    /// The campaign's zone, for recipients whose own cannot be told (never the machine's).
    pub timezone: Option<jiff::tz::TimeZone>,
    /// The campaign zone's IANA name.
    pub timezone_name: Option<String>,
    pub timezone_column: Option<String>,
    pub wait_for_window: bool,
    pub call_length: Duration,
    pub suppress: Vec<PathBuf>,
    /// Most calls per number within a period, across campaigns.
    pub cap: Option<(u32, Duration)>,
    pub ledger: PathBuf,
    pub dry_run: bool,
    pub summary_json: Option<PathBuf>,
    /// Prometheus text file written at the end of every run, for node_exporter's textfile collector.
    pub metrics_file: Option<PathBuf>,
    /// The campaign file, when one was given: the name monitoring knows the campaign by.
    pub campaign_file: Option<PathBuf>,
}

/// How long after `firstocc` runs out we keep polling: the gateway's last attempt may still be on the line.
pub const POLL_GRACE: Duration = Duration::from_secs(5 * 60);

/// The campaign file. Keys match the flags (kebab-case).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CampaignFile {
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    gateway: Option<String>,
    gateways: Option<Vec<GatewayTable>>,
    app: Option<String>,
    rate: Option<String>,
    lines: Option<i64>,
    poll_interval: Option<String>,
    poll_rate: Option<String>,
    poll_timeout: Option<String>,
    state: Option<PathBuf>,
    phone_column: Option<String>,
    encoding: Option<String>,
    delimiter: Option<String>,
    default_region: Option<String>,
    suppress_region: Option<String>,
    firstocc: Option<i64>,
    number_format: Option<String>,
    response_keys: Option<Vec<String>>,
    keep_records: Option<bool>,
    request_retries: Option<i64>,
    drain_timeout: Option<String>,
    max_outage: Option<String>,
    /// Refused with a reason: redialing is a one-off action of one run, never a standing setting.
    redial_unknown: Option<toml::Value>,
    request_timeout: Option<String>,
    window: Option<String>,
    days: Option<String>,
    timezone: Option<String>,
    timezone_column: Option<String>,
    skip_dates: Option<Vec<String>>,
    outside_window: Option<String>,
    call_length: Option<String>,
    suppress: Option<Vec<PathBuf>>,
    recall_on: Option<Words>,
    caller_id: Option<String>,
    caller_id_param: Option<String>,
    detection: Option<i64>,
    detection_param: Option<String>,
    fields: Option<toml::Table>,
    info: Option<String>,
    require_fields: Option<Words>,
    recall_unless: Option<Words>,
    recall_after: Option<String>,
    max_attempts: Option<i64>,
    max_calls_per_number: Option<i64>,
    per: Option<String>,
    ledger: Option<PathBuf>,
    dry_run: Option<bool>,
    summary_json: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    gateway_user: Option<String>,
    gateway_password_env: Option<String>,
    simulator: Option<SimulatorTable>,
}

/// One `[[gateways]]` entry; what it leaves out comes from the campaign.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GatewayTable {
    url: String,
    lines: Option<i64>,
    rate: Option<String>,
    gateway_user: Option<String>,
    gateway_password_env: Option<String>,
    ca_cert: Option<PathBuf>,
}

/// A TOML value that may be written as one comma-separated string or as a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
}

impl Words {
    fn items(self) -> Vec<String> {
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

/// The call request's extra fields from flags and the file (a flag's field wins over the file's of the same
/// name), validated. A flag's mistake is a usage error (64), the file's a configuration error (78).
fn request_fields(args: &RunArgs, file: &CampaignFile) -> Result<crate::fields::RequestFields> {
    let flag = |e: String| Error::Usage(e);
    let key = |e: String| Error::Config(format!("campaign file: {e}"));
    let mut out = crate::fields::RequestFields::default();
    match (&args.caller_id, &file.caller_id) {
        (Some(c), _) => {
            out.caller_id =
                Some(crate::fields::caller_id(c).map_err(|e| flag(format!("--caller-id: {e}")))?)
        }
        (None, Some(c)) => {
            out.caller_id =
                Some(crate::fields::caller_id(c).map_err(|e| key(format!("caller-id: {e}")))?)
        }
        (None, None) => {}
    }
    const LEVELS: &str = "use 0 (balanced), 1 (more aggressive), 2 (most aggressive) or 3 (off)";
    match (&args.detection, file.detection) {
        (Some(d), _) => match d.trim().parse::<u8>() {
            Ok(d) if d <= 3 => out.detection = Some(d),
            _ => return Err(flag(format!("--detection {d:?}: {LEVELS}"))),
        },
        (None, Some(d)) => match u8::try_from(d) {
            Ok(d) if d <= 3 => out.detection = Some(d),
            _ => return Err(key(format!("detection = {d}: {LEVELS}"))),
        },
        (None, None) => {}
    }
    for (param, flag_value, file_value, what) in [
        (
            &mut out.caller_id_param,
            &args.caller_id_param,
            &file.caller_id_param,
            "caller-id-param",
        ),
        (
            &mut out.detection_param,
            &args.detection_param,
            &file.detection_param,
            "detection-param",
        ),
    ] {
        if let Some(name) = flag_value.as_ref().or(file_value.as_ref()) {
            let f = crate::fields::field(name, "").map_err(|e| {
                if flag_value.is_some() {
                    flag(format!("--{what}: {e}"))
                } else {
                    key(format!("{what}: {e}"))
                }
            })?;
            *param = f.name;
        }
    }
    if out
        .caller_id_param
        .eq_ignore_ascii_case(&out.detection_param)
    {
        return Err(Error::Usage(format!(
            "caller-id-param and detection-param are both {:?}: the gateway would get two values under one name",
            out.caller_id_param
        )));
    }
    let mut fields: Vec<crate::fields::Field> = Vec::new();
    for (name, template) in file.fields.iter().flatten() {
        let template = template.as_str().ok_or_else(|| {
            key(format!(
                "[fields]: {name} = {template}: write the template as a string, e.g. {name} = \"{{column}}\""
            ))
        })?;
        if let Some(twin) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
            return Err(key(format!(
                "[fields]: {name} and {} are one field (names are case-insensitive, as the gateway's are); keep one",
                twin.name
            )));
        }
        fields
            .push(crate::fields::field(name, template).map_err(|e| key(format!("[fields]: {e}")))?);
    }
    for spec in &args.field {
        let f = crate::fields::parse_field(spec).map_err(|e| flag(format!("--field: {e}")))?;
        fields.retain(|g| !g.name.eq_ignore_ascii_case(&f.name));
        fields.push(f);
    }
    out.fields = fields;
    // `info` is a required parameter of the call request: an empty label is not one.
    let empty_info = "is empty; the gateway requires an info text (leave it out for the default)";
    match (&args.info, &file.info) {
        (Some(t), _) if t.trim().is_empty() => return Err(flag(format!("--info {empty_info}"))),
        (None, Some(t)) if t.trim().is_empty() => return Err(key(format!("info {empty_info}"))),
        _ => {}
    }
    out.info = match (&args.info, &file.info) {
        (Some(t), _) => {
            Some(crate::fields::Template::parse(t).map_err(|e| flag(format!("--info: {e}")))?)
        }
        (None, Some(t)) => {
            Some(crate::fields::Template::parse(t).map_err(|e| key(format!("info: {e}")))?)
        }
        (None, None) => None,
    };
    let (required, from_flag) = match (&args.require_fields, &file.require_fields) {
        (Some(v), _) => (v.clone(), true),
        (None, Some(w)) => (w.clone().items(), false),
        (None, None) => (Vec::new(), true),
    };
    for r in &required {
        if !out
            .fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(r.trim()))
        {
            let e = format!("require-fields names {r:?}, which no field sets");
            return Err(if from_flag {
                flag(format!("--{e}"))
            } else {
                key(e)
            });
        }
    }
    out.required = required.iter().map(|r| r.trim().to_string()).collect();
    Ok(out)
}

/// The recall policy from flags or the file, validated.
fn recall_of(
    on: Option<(Vec<String>, String)>,
    unless: Option<(Vec<String>, String)>,
    after: Option<(String, String)>,
    max: Option<(String, String)>,
) -> Result<Option<crate::engine::Recall>> {
    // `recall-on = []` says nothing: taken as not given, so `max-attempts` without an outcome is refused
    // alike either way.
    let on = on.filter(|(v, _)| v.iter().any(|w| !w.trim().is_empty()));
    let unless = unless.filter(|(v, _)| v.iter().any(|w| !w.trim().is_empty()));
    if on.is_none() && unless.is_none() {
        if let Some((_, what)) = after.or(max) {
            return Err(Error::Usage(format!(
                "{what} needs --recall-on or --recall-unless (which outcomes are called again)"
            )));
        }
        return Ok(None);
    }
    let mut policy = crate::engine::Recall {
        on_failed: false,
        on_unresolved: false,
        on_no_response: false,
        unless: Vec::new(),
        after: Duration::from_secs(3600),
        max_attempts: 3,
    };
    if let Some((words, what)) = on {
        for w in words {
            match w.to_ascii_lowercase().as_str() {
                "failed" => policy.on_failed = true,
                "unresolved" => policy.on_unresolved = true,
                "no-response" | "no_response" => policy.on_no_response = true,
                other => {
                    return Err(Error::Usage(format!(
                        "{what}: {other:?} is not an outcome to recall; use failed, unresolved or no-response"
                    )));
                }
            }
        }
    }
    if let Some((answers, what)) = unless {
        for a in answers {
            let (k, v) = a
                .split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{what}: {a:?} is not an answer; write it like Confirm=1"
                    ))
                })?;
            // `|` and `^` separate responses and fields in the gateway's reply: inside one answer they could
            // never match, and everyone who gave it would be called again.
            if a.contains(['|', '^']) || k.chars().chain(v.chars()).any(|c| c.is_control()) {
                return Err(Error::Usage(format!(
                    "{what}: {a:?} joins several answers; give each on its own, comma-separated (Confirm=1,Confirm=2: a call with any one of them is not recalled)"
                )));
            }
            policy.unless.push((k, v));
        }
    }
    if let Some((t, what)) = after {
        policy.after = parse_duration(&t).map_err(|e| Error::Usage(format!("{what}: {e}")))?;
    }
    if let Some((t, what)) = max {
        policy.max_attempts = positive_u32(int(&t, &what)?, &what)?;
    }
    Ok(Some(policy))
}

/// `[simulator]`: used when `gateway = "sim"`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SimulatorTable {
    lines: Option<i64>,
    ring_delay: Option<String>,
    call_duration: Option<String>,
    retry_delay: Option<String>,
    scenario: Option<PathBuf>,
    record: Option<PathBuf>,
}

fn read_campaign(path: &Path) -> Result<CampaignFile> {
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

/// Turns a path from the campaign file into one usable from the current directory.
fn relative_to(base: Option<&Path>, p: PathBuf) -> PathBuf {
    match base {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    }
}

/// A value from a flag or from the file, remembering which, so errors can name it the way the user wrote it.
fn pick<T>(flag: Option<T>, file: Option<T>, key: &str) -> Option<(T, String)> {
    match (flag, file) {
        (Some(v), _) => Some((v, format!("--{key}"))),
        (None, Some(v)) => Some((v, format!("campaign key {key}"))),
        (None, None) => None,
    }
}

/// How a setting was given, for a message about it: the flag, the campaign key, or its default.
fn named(flag: bool, file: bool, key: &str) -> String {
    match (flag, file) {
        (true, _) => format!("--{key}"),
        (false, true) => format!("campaign key {key}"),
        (false, false) => key.to_string(),
    }
}

fn positive_u32(v: i64, what: &str) -> Result<u32> {
    if v <= 0 {
        return Err(Error::Usage(format!("{what}: must be at least 1, not {v}")));
    }
    u32::try_from(v).map_err(|_| Error::Usage(format!("{what}: {v} is too large")))
}

fn int(text: &str, what: &str) -> Result<i64> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| Error::Usage(format!("{what}: {text:?} is not a whole number")))
}

fn duration_of(v: Option<(String, String)>, default: Duration) -> Result<Duration> {
    match v {
        None => Ok(default),
        Some((text, what)) => {
            parse_duration(&text).map_err(|e| Error::Usage(format!("{what}: {e}")))
        }
    }
}

fn rate_of(v: Option<(String, String)>, default: Rate) -> Result<Rate> {
    match v {
        None => Ok(default),
        Some((text, what)) => text
            .parse()
            .map_err(|e| Error::Usage(format!("{what}: {e}"))),
    }
}

/// Default results path: `contacts.csv` → `contacts.results.csv` beside it.
pub fn default_output(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "contacts".into());
    input.with_file_name(format!("{stem}.results.csv"))
}

/// Default journal directory: `results.csv` → `results.csv.state/` beside it.
pub fn default_state_dir(output: &Path) -> PathBuf {
    let mut name = output
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(".state");
    output.with_file_name(name)
}

impl RunConfig {
    /// How the contact list is to be read.
    pub fn read_options(&self) -> crate::contacts::ReadOptions {
        crate::contacts::ReadOptions {
            encoding: self.encoding,
            delimiter: self.delimiter,
            phone_column: self.phone_column.clone(),
            timezone_column: self.timezone_column.clone(),
        }
    }

    /// Merges flags over the campaign file and validates everything.
    pub fn from_args(mut args: RunArgs) -> Result<RunConfig> {
        let mut file = match &args.campaign {
            Some(p) => read_campaign(p)?,
            None => CampaignFile::default(),
        };
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
        let forget_gateway = std::mem::take(&mut args.forget_gateway);
        let base = args
            .campaign
            .as_deref()
            .map(|p| p.parent().unwrap_or(Path::new("")).to_path_buf());
        let base = base.as_deref();
        let request = request_fields(&args, &file)?;

        let input = args
            .input
            .or_else(|| file.input.map(|p| relative_to(base, p)))
            .ok_or_else(|| {
                Error::Usage(
                    "no contact list: give --input FILE or set input in the campaign file".into(),
                )
            })?;
        let output = args
            .output
            .or_else(|| file.output.map(|p| relative_to(base, p)))
            .unwrap_or_else(|| default_output(&input));
        let state_dir = args
            .state
            .or_else(|| file.state.map(|p| relative_to(base, p)))
            .unwrap_or_else(|| default_state_dir(&output));

        let (app, _) = pick(args.app, file.app, "app").ok_or_else(|| {
            Error::Usage("no IVR app: give --app NAME or set app in the campaign file (the name deployed on the gateway)".into())
        })?;
        if app.trim().is_empty() {
            return Err(Error::Usage("--app: the IVR app name is empty".into()));
        }

        let rate = rate_of(
            pick(args.rate, file.rate, "rate"),
            Rate::Limited {
                count: 1,
                per: Duration::from_secs(1),
            },
        )?;
        let lines = match pick(args.lines, file.lines.map(|n| n.to_string()), "lines") {
            None => 4,
            Some((t, what)) => positive_u32(int(&t, &what)?, &what)?,
        };
        let poll_interval = duration_of(
            pick(args.poll_interval, file.poll_interval, "poll-interval"),
            Duration::from_secs(5),
        )?;
        let poll_rate = rate_of(
            pick(args.poll_rate, file.poll_rate, "poll-rate"),
            Rate::Limited {
                count: 10,
                per: Duration::from_secs(1),
            },
        )?;
        let firstocc_named = named(args.firstocc.is_some(), file.firstocc.is_some(), "firstocc");
        let firstocc = match pick(
            args.firstocc,
            file.firstocc.map(|n| n.to_string()),
            "firstocc",
        ) {
            None => 10,
            Some((t, what)) => positive_u32(int(&t, &what)?, &what)?,
        };
        let timeout_given = pick(args.poll_timeout, file.poll_timeout, "poll-timeout");
        let timeout_named = timeout_given
            .as_ref()
            .map_or("poll-timeout".to_string(), |(_, w)| w.clone());
        let poll_timeout = duration_of(
            timeout_given,
            Duration::from_secs(u64::from(firstocc) * 60) + POLL_GRACE,
        )?;
        if poll_timeout < poll_interval || poll_timeout.is_zero() {
            // Every call would be requested and written off before its first status read.
            return Err(Error::Usage(format!(
                "{timeout_named} ({}) must be at least the poll interval ({}): a call is written off only after a status read",
                crate::types::Dur(poll_timeout),
                crate::types::Dur(poll_interval)
            )));
        }
        let phone_column = pick(args.phone_column, file.phone_column, "phone-column")
            .map(|(c, _)| c.trim().to_string())
            .filter(|c| !c.is_empty());
        let encoding = match pick(args.encoding, file.encoding, "encoding") {
            None => crate::contacts::EncodingChoice::Auto,
            Some((t, what)) => t
                .parse()
                .map_err(|e| Error::Usage(format!("{what}: {e}")))?,
        };
        let delimiter = match pick(args.delimiter, file.delimiter, "delimiter") {
            None => None,
            Some((t, what)) => Some(
                crate::contacts::parse_delimiter(&t)
                    .map_err(|e| Error::Usage(format!("{what}: {e}")))?,
            ),
        };
        let region = |v: Option<(String, String)>| -> Result<Option<crate::contacts::Region>> {
            match v {
                None => Ok(None),
                Some((r, what)) => crate::contacts::region(&r).map(Some).ok_or_else(|| {
                    Error::Usage(format!(
                        "{what}: {r:?} is not a region code; use a two-letter ISO code like US or GB"
                    ))
                }),
            }
        };
        let default_region = region(pick(
            args.default_region,
            file.default_region,
            "default-region",
        ))?
        .unwrap_or(crate::contacts::Region::US);
        let suppress_region = region(pick(
            args.suppress_region,
            file.suppress_region,
            "suppress-region",
        ))?
        .unwrap_or(default_region);
        let number_format = match pick(args.number_format, file.number_format, "number-format") {
            None => NumberFormat::E164,
            Some((t, what)) => t
                .parse()
                .map_err(|e| Error::Usage(format!("{what}: {e}")))?,
        };
        let response_keys = args
            .response_keys
            .or(file.response_keys)
            .unwrap_or_default()
            .into_iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        let keep_records = args.keep_records || file.keep_records.unwrap_or(false);
        let request_retries = match pick(
            args.request_retries,
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
            pick(args.drain_timeout, file.drain_timeout, "drain-timeout"),
            Duration::from_secs(120),
        )?;
        let max_outage = duration_of(
            pick(args.max_outage, file.max_outage, "max-outage"),
            Duration::from_secs(600),
        )?;
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
        let request_timeout = duration_of(
            pick(
                args.request_timeout,
                file.request_timeout,
                "request-timeout",
            ),
            Duration::from_secs(15),
        )?;
        if request_timeout.is_zero() {
            return Err(Error::Usage("request-timeout: must be above zero".into()));
        }
        let call_length_named = named(
            args.call_length.is_some(),
            file.call_length.is_some(),
            "call-length",
        );
        let call_length = duration_of(
            pick(args.call_length, file.call_length, "call-length"),
            Duration::from_secs(120),
        )?;
        let days = match pick(args.days, file.days, "days") {
            None => None,
            Some((t, what)) => Some(
                crate::rules::window::parse_days(&t)
                    .map_err(|e| Error::Usage(format!("{what}: {e}")))?,
            ),
        };
        let skip = match (args.skip_dates.is_empty(), file.skip_dates) {
            (false, _) => crate::rules::window::parse_dates(&args.skip_dates)
                .map_err(|e| Error::Usage(format!("--skip-dates: {e}")))?,
            (true, Some(d)) => crate::rules::window::parse_dates(&d)
                .map_err(|e| Error::Usage(format!("campaign key skip-dates: {e}")))?,
            (true, None) => Vec::new(),
        };
        let margin = Duration::from_secs(u64::from(firstocc) * 60) + call_length;
        let window = match (
            pick(args.window, file.window, "window"),
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
                    .map_err(|e| Error::Usage(format!("{what}: {e}")))?,
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
        let (timezone, timezone_name) = match pick(args.timezone, file.timezone, "timezone") {
            Some((t, what)) => (
                Some(crate::zones::zone(&t).map_err(|e| Error::Usage(format!("{what}: {e}")))?),
                Some(t.trim().to_string()),
            ),
            None => (None, None),
        };
        let timezone_column = pick(
            args.timezone_column,
            file.timezone_column,
            "timezone-column",
        )
        .map(|(c, _)| c);
        let wait_for_window = match pick(args.outside_window, file.outside_window, "outside-window")
        {
            None => false,
            Some((t, what)) => match t.trim() {
                "wait" => true,
                "stop" => false,
                _ => return Err(Error::Usage(format!("{what}: {t:?} is not wait or stop"))),
            },
        };
        let suppress = if args.suppress.is_empty() {
            file.suppress
                .unwrap_or_default()
                .into_iter()
                .map(|p| relative_to(base, p))
                .collect()
        } else {
            args.suppress
        };
        let cap = match (
            pick(
                args.max_calls_per_number,
                file.max_calls_per_number.map(|n| n.to_string()),
                "max-calls-per-number",
            ),
            pick(args.per, file.per, "per"),
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
        let recall = recall_of(
            pick(
                args.recall_on.filter(|v| !v.is_empty()),
                file.recall_on.map(Words::items),
                "recall-on",
            ),
            pick(
                args.recall_unless.filter(|v| !v.is_empty()),
                file.recall_unless.map(Words::items),
                "recall-unless",
            ),
            pick(args.recall_after, file.recall_after, "recall-after"),
            pick(
                args.max_attempts,
                file.max_attempts.map(|n| n.to_string()),
                "max-attempts",
            ),
        )?;
        let ledger = args
            .ledger
            .or_else(|| file.ledger.map(|p| relative_to(base, p)))
            .unwrap_or_else(crate::rules::ledger::default_path);
        let dry_run = args.dry_run || file.dry_run.unwrap_or(false);
        let summary_json = args
            .summary_json
            .or_else(|| file.summary_json.map(|p| relative_to(base, p)));
        let metrics_file = args
            .metrics_file
            .or_else(|| file.metrics_file.map(|p| relative_to(base, p)));
        let gateways = gateways_of(&mut gateway_inputs, base, lines, &rate)?;
        let forget_gateways = forget_gateway
            .iter()
            .map(|g| gateway_key_of(g).map_err(|e| Error::Usage(format!("--forget-gateway: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let mut read: Vec<(&str, &Path)> = vec![("the cap ledger", ledger.as_path())];
        if let Some(c) = &args.campaign {
            read.push(("the campaign file", c.as_path()));
        }
        refuse_overwriting(
            &input,
            &output,
            &state_dir,
            &suppress,
            &read,
            &[
                ("--summary-json", summary_json.as_deref()),
                ("--metrics-file", metrics_file.as_deref()),
            ],
        )?;
        Ok(RunConfig {
            input,
            output,
            state_dir,
            gateways,
            forget_gateways,
            app: app.trim().to_string(),
            rate,
            lines,
            poll_interval,
            poll_rate,
            poll_timeout,
            phone_column,
            encoding,
            delimiter,
            default_region,
            suppress_region,
            recall,
            request,
            firstocc,
            number_format,
            response_keys,
            keep_records,
            request_retries,
            drain_timeout,
            max_outage,
            request_timeout,
            window,
            timezone,
            timezone_name,
            timezone_column,
            wait_for_window,
            call_length,
            suppress,
            cap,
            ledger,
            dry_run,
            summary_json,
            metrics_file,
            campaign_file: args.campaign.clone(),
        })
    }
}

/// Whether two paths name the same file (or would: a path that does not exist yet is compared as written,
/// made absolute).
fn same_file(a: &Path, b: &Path) -> bool {
    resolved(a) == resolved(b)
}

/// Where a path leads, whether or not it exists yet: its deepest existing ancestor with symbolic links and
/// `..` resolved, then the rest taken as written (`..` there undoing the name before it). Two spellings of
/// one file (`sub/../r.csv`, a link to its directory) compare equal before either exists.
fn resolved(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut existing = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let mut base = loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            break c;
        }
        match existing.components().next_back() {
            Some(Component::Normal(name)) => rest.push(name.to_os_string()),
            Some(Component::ParentDir) => rest.push("..".into()),
            Some(Component::CurDir) => {}
            _ => break existing,
        }
        existing.pop();
    };
    for name in rest.iter().rev() {
        if name == ".." {
            base.pop();
        } else {
            base.push(name);
        }
    }
    base
}

/// Whether an existing file is an SQLite database (a journal or a cap ledger): never a report's target.
fn is_sqlite(p: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 16];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"SQLite format 3\0")
}

/// The files a run writes must not be the files it reads, nor each other, nor its journal: a typo in
/// `--output` must not overwrite the list, nor `--metrics-file` the journal that says who was called.
fn refuse_overwriting(
    input: &Path,
    output: &Path,
    state_dir: &Path,
    suppress: &[PathBuf],
    also_read: &[(&str, &Path)],
    reports: &[(&str, Option<&Path>)],
) -> Result<()> {
    let mut written: Vec<(&str, &Path)> = vec![("--output", output)];
    written.extend(reports.iter().filter_map(|(flag, p)| Some((*flag, (*p)?))));
    let state = resolved(state_dir);
    for (i, (what_w, w)) in written.iter().enumerate() {
        if let Some(why) = crate::output::results::not_a_file_to_replace(w) {
            return Err(Error::Usage(format!("{what_w} {}: {why}", w.display())));
        }
        let db = crate::store::journal::DB_FILE;
        let journal_files = [
            state.clone(),
            state.join(db),
            state.join(format!("{db}-wal")),
            state.join(format!("{db}-shm")),
            state.join(crate::store::journal::LOCK_FILE),
        ];
        if journal_files.contains(&resolved(w)) || is_sqlite(w) {
            return Err(Error::Usage(format!(
                "{what_w} {} is a journal or one of its files, or a cap ledger: it would overwrite what a campaign knows; write it elsewhere",
                w.display()
            )));
        }
        if let Some((what_o, _)) = written[..i].iter().find(|(_, o)| same_file(w, o)) {
            return Err(Error::Usage(format!(
                "{what_w} {} is also {what_o}: one would overwrite the other; give each its own file",
                w.display()
            )));
        }
    }
    let mut read: Vec<(&str, &Path)> = vec![("the contact list", input)];
    read.extend(suppress.iter().map(|p| ("a suppression list", p.as_path())));
    read.extend_from_slice(also_read);
    for (what_w, w) in &written {
        for (what_r, r) in &read {
            if same_file(w, r) {
                return Err(Error::Usage(format!(
                    "{what_w} {} is {what_r}: it would be overwritten; write the results elsewhere",
                    w.display()
                )));
            }
        }
    }
    Ok(())
}

/// `http://user:secret@host` → `http://***@host`, for messages.
fn redact_userinfo(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &text[..s + 3], &text[at..]),
        (None, Some(at)) => format!("***{}", &text[at..]),
        _ => text.to_string(),
    }
}

/// What the flags and the file say about gateways, taken out before the rest is read.
struct GatewayInputs {
    flags: Vec<String>,
    one: Option<String>,
    list: Option<Vec<GatewayTable>>,
    simulator: Option<SimulatorTable>,
    /// (flag, file) pairs of the campaign-wide defaults.
    user: (Option<String>, Option<String>),
    password_env: (Option<String>, Option<String>),
    ca_cert: (Option<PathBuf>, Option<PathBuf>),
}

/// The campaign's gateways: `--gateway` flags (which replace the file's), else `[[gateways]]`, else
/// `gateway`, else the default local gateway. Each takes the campaign's lines, credentials and CA
/// certificate unless its `[[gateways]]` entry sets its own.
fn gateways_of(
    g: &mut GatewayInputs,
    base: Option<&Path>,
    lines: u32,
    total: &Rate,
) -> Result<Vec<GatewaySpec>> {
    let file_user = g.user.1.take();
    let file_env = g.password_env.1.take();
    let file_ca = g.ca_cert.1.take().map(|p| relative_to(base, p));
    let campaign_user = g.user.0.take().or(file_user);
    let campaign_env = g.password_env.0.take().or(file_env);
    let campaign_ca = g.ca_cert.0.take().or(file_ca);
    struct Entry {
        url: String,
        what: String,
        lines: Option<i64>,
        rate: Option<String>,
        user: Option<String>,
        env: Option<String>,
        ca: Option<PathBuf>,
    }
    let plain = |url: String, what: String| Entry {
        url,
        what,
        lines: None,
        rate: None,
        user: None,
        env: None,
        ca: None,
    };
    let entries: Vec<Entry> = if !g.flags.is_empty() {
        g.flags
            .drain(..)
            .map(|u| plain(u, "--gateway".into()))
            .collect()
    } else {
        match (g.one.take(), g.list.take()) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "campaign file: give either `gateway` or `[[gateways]]`, not both".into(),
                ));
            }
            (Some(u), None) => vec![plain(u, "campaign key gateway".into())],
            (None, Some(list)) if list.is_empty() => {
                return Err(Error::Config(
                    "campaign file: `gateways` lists no gateway".into(),
                ));
            }
            (None, Some(list)) => list
                .into_iter()
                .enumerate()
                .map(|(i, t)| Entry {
                    url: t.url,
                    what: format!("campaign key gateways[{}].url", i + 1),
                    lines: t.lines,
                    rate: t.rate,
                    user: t.gateway_user,
                    env: t.gateway_password_env,
                    ca: t.ca_cert.map(|p| relative_to(base, p)),
                })
                .collect(),
            (None, None) => vec![plain(
                "http://localhost:8155".into(),
                "the default gateway".into(),
            )],
        }
    };
    let mut out: Vec<GatewaySpec> = Vec::with_capacity(entries.len());
    let mut sims = 0;
    for e in entries {
        let (target, key) = if e.url.trim().eq_ignore_ascii_case("sim") {
            sims += 1;
            let mut settings = sim_settings(g.simulator.clone().unwrap_or_default(), base)?;
            if sims > 1 {
                // Each simulator records to its own file.
                settings.record = settings.record.map(|p| {
                    let mut name = p.clone().into_os_string();
                    name.push(format!(".sim-{sims}"));
                    PathBuf::from(name)
                });
            }
            let key = if sims == 1 {
                "sim".to_string()
            } else {
                format!("sim-{sims}")
            };
            (GatewayTarget::Simulator(Box::new(settings)), key)
        } else {
            let url = parse_gateway_url(&e.url)
                .map_err(|err| Error::Usage(format!("{}: {err}", e.what)))?;
            let key = gateway_key(&url);
            (GatewayTarget::Url(url), key)
        };
        if out.iter().any(|o| o.key == key) {
            return Err(Error::Usage(format!(
                "{}: gateway {key} is listed twice (each gateway once; its lines say how many calls it takes)",
                e.what
            )));
        }
        let entry_lines = match e.lines {
            None => lines,
            Some(n) => positive_u32(n, &format!("{}: lines", e.what.trim_end_matches(".url")))?,
        };
        let rate = e
            .rate
            .map(|r| {
                r.parse::<Rate>().map_err(|err| {
                    Error::Usage(format!("{}: rate: {err}", e.what.trim_end_matches(".url")))
                })
            })
            .transpose()?
            // A gateway's own rate above the campaign's total changes nothing.
            .filter(|r| r.interval() > total.interval());
        let url_user = match &target {
            GatewayTarget::Url(u) if !u.username().is_empty() => Some(u.username().to_string()),
            _ => None,
        };
        let user = e.user.or_else(|| campaign_user.clone()).or(url_user);
        let env = e
            .env
            .or_else(|| campaign_env.clone())
            .unwrap_or_else(|| "IVR_GATEWAY_PASSWORD".into());
        let auth = match user {
            None => None,
            Some(user) => {
                let password = std::env::var(&env).map_err(|_| {
                    Error::Usage(format!(
                        "gateway {key}: user {user:?} is set but the environment variable {env} (its password) is not"
                    ))
                })?;
                Some((user, Secret(password)))
            }
        };
        out.push(GatewaySpec {
            target,
            key,
            lines: entry_lines,
            rate,
            ca_cert: e.ca.or_else(|| campaign_ca.clone()),
            auth,
        });
    }
    Ok(out)
}

/// How a gateway URL is named in the journal and the results: without credentials, and without the lone
/// `/` a URL with no path gets.
pub fn gateway_key(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let text = u.to_string();
    match text.strip_suffix('/') {
        Some(t) if u.path() == "/" && u.query().is_none() => t.to_string(),
        _ => text,
    }
}

/// A gateway's key from what an operator typed: a URL (credentials ignored), or `sim`, `sim-2`, ….
pub fn gateway_key_of(text: &str) -> std::result::Result<String, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if lower == "sim"
        || lower
            .strip_prefix("sim-")
            .is_some_and(|n| n.parse::<u32>().is_ok())
    {
        return Ok(lower);
    }
    parse_gateway_url(t).map(|u| gateway_key(&u))
}

/// Accepts `http://host:port[/prefix]` (and a bare `host:port`, taken as http).
pub fn parse_gateway_url(text: &str) -> Result<reqwest::Url, String> {
    let t = text.trim();
    // URL rules forgive `http:/x` and backslashes (the host becomes `http`, or `x`): for a gateway they are
    // typos, and the run would wait out max-outage on a host that is not there.
    let lower = t.to_ascii_lowercase();
    let scheme_typo = ["http:", "https:"]
        .iter()
        .any(|s| lower.starts_with(s) && !lower[s.len()..].starts_with("//"));
    if t.contains('\\') || scheme_typo {
        return Err(format!(
            "{:?} is not a gateway URL; write it like http://10.0.0.5:8155",
            redact_userinfo(text)
        ));
    }
    let with_scheme = if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|e| format!("{:?} is not a gateway URL ({e})", redact_userinfo(text)))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{:?}: use http:// or https://", url.scheme()));
    }
    if t.chars().any(char::is_whitespace) {
        return Err(format!(
            "{:?} is not a gateway URL (it contains a space)",
            redact_userinfo(text)
        ));
    }
    // `http:///x` is read by URL rules as the host `x`: a slash too many is a typo, not a host.
    let after_scheme = with_scheme.split_once("://").map_or("", |(_, rest)| rest);
    if url.host_str().is_none_or(str::is_empty) || after_scheme.starts_with('/') {
        return Err(format!("{:?} has no host", redact_userinfo(text)));
    }
    if url.port() == Some(0) {
        return Err(format!(
            "{:?}: port 0 is not a port a gateway listens on",
            redact_userinfo(text)
        ));
    }
    if let Some(name) = url.domain().filter(|name| !is_host_name(name)) {
        return Err(format!(
            "{:?} is not a gateway URL ({name:?} is not a host name or address)",
            redact_userinfo(text)
        ));
    }
    if url.password().is_some() {
        // Never echo it: the message names the problem, not the secret.
        return Err("the gateway URL holds a password; give the user with --gateway-user and the password in IVR_GATEWAY_PASSWORD".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        // The handlers' paths are appended to the base: a query or fragment there means nothing, and two
        // spellings of one gateway would count its lines twice.
        return Err(format!(
            "{:?} has a query or fragment (`?…`, `#…`); give the gateway's base URL, e.g. http://10.0.0.5:8155",
            redact_userinfo(text)
        ));
    }
    Ok(canonical(url))
}

/// One spelling per gateway, so a gateway listed twice is seen as one: no trailing slashes on a path
/// prefix, and an IPv4 address written as IPv6 (`[::ffff:127.0.0.1]`) as IPv4.
fn canonical(mut url: reqwest::Url) -> reqwest::Url {
    if let Some(std::net::IpAddr::V6(v6)) = url
        .host_str()
        .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        let _ = url.set_ip_host(std::net::IpAddr::V4(v4));
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(if trimmed.is_empty() { "/" } else { &trimmed });
    url
}

/// A host name as DNS takes it (RFC 1123 labels, after IDNA): without this check a typo such as `ht!tp:/x`
/// becomes the host `ht!tp`, and the run waits out `max-outage` on lookups that can never succeed.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                // `_` is not in RFC 1123, but Windows networks name hosts with it and resolvers pass it.
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn sim_settings(t: SimulatorTable, base: Option<&Path>) -> Result<SimSettings> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths() {
        let out = default_output(Path::new("/x/contacts.csv"));
        assert_eq!(out, PathBuf::from("/x/contacts.results.csv"));
        assert_eq!(
            default_state_dir(&out),
            PathBuf::from("/x/contacts.results.csv.state")
        );
    }

    #[test]
    fn the_example_campaigns_are_valid() {
        let demo = RunConfig::from_args(RunArgs {
            campaign: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/campaigns/demo.toml"
            ))),
            ..RunArgs::default()
        })
        .expect("demo.toml");
        assert!(matches!(
            demo.gateways[0].target,
            GatewayTarget::Simulator(_)
        ));
        let nightly = RunConfig::from_args(RunArgs {
            campaign: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/campaigns/nightly/reminders.toml"
            ))),
            input: Some(PathBuf::from("/srv/ivr/lists/reminders-2026-11-26.csv")),
            ..RunArgs::default()
        })
        .expect("nightly/reminders.toml");
        assert!(nightly.window.is_some());
        assert_eq!(nightly.cap.map(|c| c.0), Some(1));
    }

    /// The settings of a campaign file with these lines (and a list beside it).
    fn from_toml(extra: &str, flags: RunArgs) -> Result<RunConfig> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.csv"), "phone\n6465550100\n").expect("list");
        let toml = format!("input = \"c.csv\"\napp = \"A\"\n{extra}");
        std::fs::write(dir.path().join("c.toml"), toml).expect("campaign");
        RunConfig::from_args(RunArgs {
            campaign: Some(dir.path().join("c.toml")),
            ..flags
        })
    }

    #[test]
    fn settings_that_would_send_nonsense_are_refused() {
        let refused = |extra: &str| {
            from_toml(extra, RunArgs::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| panic!("accepted: {extra}"))
        };
        let e = refused("caller-id-param = \"detection\"\n");
        assert!(e.contains("both"), "{e}");
        let e = refused("[fields]\nattendee = \"{phone}\"\nAttendee = \"{phone}\"\n");
        assert!(e.contains("one field"), "{e}");
        let e = refused("recall-on = []\nmax-attempts = 2\n");
        assert!(e.contains("needs --recall-on"), "{e}");
        let e = refused("info = \"\"\n");
        assert!(e.contains("info"), "{e}");
        let e = refused(
            "[[gateways]]\nurl = \"http://127.0.0.1:8155\"\n[[gateways]]\nurl = \"http://127.0.0.1:8155/\"\n",
        );
        assert!(e.contains("listed twice"), "{e}");
        let e = refused("recall-on = [\"no-response\"]\nrecall-unless = [\"Confirm=1|Q=2\"]\n");
        assert!(e.contains("joins several answers"), "{e}");
        let e = refused("[fields]\n\"\u{17f}ms\" = \"1\"\n");
        assert!(e.contains("ASCII"), "{e}");
        for (extra, says) in [
            (
                "metrics-file = \"r.csv\"\noutput = \"r.csv\"\n",
                "is also --output",
            ),
            (
                "summary-json = \"s\"\nmetrics-file = \"s\"\n",
                "is also --summary-json",
            ),
            (
                "output = \"r.csv\"\nmetrics-file = \"r.csv.state/journal.sqlite\"\n",
                "is a journal",
            ),
            ("summary-json = \"/dev/null\"\n", "not a regular file"),
            ("metrics-file = \".\"\n", "a directory"),
            (
                "output = \"r.csv\"\nmetrics-file = \"sub/../r.csv.state/journal.sqlite\"\n",
                "is a journal",
            ),
            ("summary-json = \"sub/../c.csv\"\n", "is the contact list"),
            ("output = \"c.toml\"\n", "is the campaign file"),
            (
                "ledger = \"l.sqlite\"\nmetrics-file = \"l.sqlite\"\n",
                "is the cap ledger",
            ),
        ] {
            let e = refused(extra);
            assert!(e.contains(says), "{extra}: {e}");
        }
        assert!(from_toml("", RunArgs::default()).is_ok());
    }

    #[test]
    fn gateway_urls() {
        assert!(parse_gateway_url("http://10.0.0.5:8155").is_ok());
        assert!(parse_gateway_url("gw.local:8155").is_ok());
        assert!(parse_gateway_url("http://").is_err());
        assert!(parse_gateway_url("ftp://x").is_err());
        assert!(parse_gateway_url("http://exa mple").is_err());
        assert!(parse_gateway_url("gw_01.clinic.lan").is_ok());
        assert!(parse_gateway_url("http://[::1]:8155").is_ok());
        assert!(parse_gateway_url("https://bücher.example/").is_ok());
        let key = |t: &str| gateway_key(&parse_gateway_url(t).expect(t));
        assert_eq!(
            key("http://gw:8155/voicent//"),
            key("http://gw:8155/voicent")
        );
        assert_eq!(key("http://GW:8155/"), key("gw:8155"));
        assert_eq!(key("http://gw:80"), key("http://gw"));
        assert_eq!(key("http://[::ffff:127.0.0.1]:8155"), key("127.0.0.1:8155"));
        assert!(parse_gateway_url("http:///x").is_err());
        for typo in ["http:/x", "http:\\\\x", "http://\\x", "HTTPS:x"] {
            assert!(parse_gateway_url(typo).is_err(), "{typo}");
        }
        assert!(parse_gateway_url("http://127.0.0.1:0").is_err());
        for odd in ["http://gw:8155/?a=1", "http://gw:8155/#second"] {
            let err = parse_gateway_url(odd).expect_err(odd);
            assert!(err.contains("query or fragment"), "{odd}: {err}");
        }
        for typo in [
            "ht!tp:/x y",
            "http://gw..lan",
            "http://-gw.lan",
            "http://gw*.lan",
            " http://gw /x",
        ] {
            let err = parse_gateway_url(typo).expect_err(typo);
            assert!(err.contains("not a gateway URL"), "{typo}: {err}");
        }
        let err = parse_gateway_url("http://user:hunter2@gw:8155").expect_err("password in URL");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_gateway_url("http://user:hunter2@exa mple").expect_err("bad URL");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
