//! The command line. Values shared with the campaign file are taken as text here and validated in
//! the settings module, so a flag and a TOML key go through one parser and fail with one kind of message.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `--version`: the program's, and the data built into it that decides who is called when.
pub fn version() -> &'static str {
    static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{} (IANA time zone database {}, libphonenumber number data {}, libphonenumber time-zone map {})",
            env!("CARGO_PKG_VERSION"),
            crate::zones::tzdb_release(),
            crate::contacts::NUMBER_DATA_RELEASE,
            crate::zones::MAP_RELEASE
        )
    });
    TEXT.as_str()
}

#[derive(Debug, Parser)]
// A flag given twice takes its last value, so wrapper scripts can append overrides.
#[command(
    name = "ivr-campaign",
    version = version(),
    about = "Run IVR phone campaigns on a Voicent Gateway",
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, help_heading = "Logging (every command)", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (warnings and errors only).
    #[arg(short, long, global = true, help_heading = "Logging (every command)")]
    pub quiet: bool,
    /// Log line format: human, or json (one object per line, for journald and log shippers).
    #[arg(
        long,
        global = true,
        help_heading = "Logging (every command)",
        default_value = "human"
    )]
    pub log_format: String,
    /// Show whole phone numbers in logs (by default only their last four digits).
    #[arg(long, global = true, help_heading = "Logging (every command)")]
    pub log_full_numbers: bool,
    /// Progress display: auto (a bar on a terminal, nothing otherwise), always (a line every 10 s when not on a
    /// terminal), never.
    #[arg(
        long,
        global = true,
        help_heading = "Logging (every command)",
        default_value = "auto"
    )]
    pub progress: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Call every contact of a list and write a results CSV. Running the same command again resumes.
    ///
    /// Every flag is also a key of the campaign file (`--poll-interval` is `poll-interval`); a flag wins over
    /// the file, and a flag given twice takes its last value. The journal (`<output>.state/`) records every
    /// contact's state, so a rerun polls calls already placed, never requests them again, and calls the rest.
    ///
    /// Exit codes: 0 every row final, none needs a person; 3 every row final, some `unknown`, `error` or
    /// `unresolved` (read their detail); 75 stopped with work left (rerun to resume); 64 bad flag or value; 65
    /// unusable contact or suppression list; 66 a file missing; 70 internal error; 73 an output file cannot be
    /// written; 74 the journal or ledger cannot be read or written; 76 the gateway's answers to call requests
    /// lost or unreadable three times in a row (check it before rerunning); 78 configuration, or the journal
    /// and the files disagree. docs/runbook.md says what to do about each.
    Run(Box<RunArgs>),
    /// Apply every rule and forecast the run without calling anyone (the same as `run --dry-run`).
    ///
    /// Writes each row's decision (`would_call`, or why not) to `<output stem>.dry-run.csv`, prints the fields
    /// of the first three callable rows as they would be sent, and forecasts how long the calls take and
    /// whether they fit in the calling window. Places no call and creates no journal; on a campaign in
    /// progress, rows already final keep their status and only the rest are judged, as the next run would.
    Validate(Box<RunArgs>),
    /// Serve a stand-in Voicent Gateway for rehearsals and tests.
    ///
    /// The three handlers over GET and POST, with the real gateway's reply shapes, a finite number of lines
    /// with a queue, and outcomes and faults scripted by a scenario file (docs/simulator.md). Point a campaign
    /// at it with --gateway http://127.0.0.1:8155, or use `gateway = "sim"` for an in-process one.
    Simulate(Box<SimulateArgs>),
    /// Show a campaign's progress from its journal (also while it runs).
    ///
    /// Rows per status in the results' words, how many are open (a rerun has work for them) and how many need
    /// a person, the recalls waiting, and each gateway's share. Reads a journal of any earlier layout without
    /// changing it.
    Status(StatusCommand),
    /// Write a self-contained HTML report of a campaign from its journal.
    ///
    /// One page with the outcomes, calls over time (every call request that ended, recalls included), the
    /// answers to each IVR question, each gateway's share, and the rows that need a person.
    Report(ReportArgs),
    /// Mark the contacts left `unknown` to be called again by the next run (once; recorded in the journal).
    /// Their first call may have been placed, so this can call a person twice: check the gateway's own log
    /// first.
    ///
    /// It applies to the contacts `unknown` at that moment (or only those of --rows), and the journal records
    /// the action with its time and count. It is a command, not a setting, so that running the same campaign
    /// again never repeats it. A redial is not held back by max-attempts: when it takes a contact past it,
    /// the command says so, naming each row.
    RedialUnknown(RedialArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory with --dir.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Default, Args)]
pub struct ManArgs {
    /// Write ivr-campaign.1 and one ivr-campaign-COMMAND.1 per command here instead of printing the main page.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Args)]
pub struct StatusCommand {
    #[command(flatten)]
    pub campaign: StatusArgs,
    /// Print JSON for scripts (schema `ivr-campaign/status/v1`, versioned with the summary's; see
    /// docs/nightly.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Args)]
pub struct RedialArgs {
    #[command(flatten)]
    pub campaign: StatusArgs,
    /// Only these data rows (as numbered in the results file), e.g. 3,7,12 [default: every unknown contact].
    #[arg(long, value_delimiter = ',')]
    pub rows: Option<Vec<u64>>,
}

/// Every flag here is also a key of the campaign TOML (`--poll-interval` is `poll-interval`); flags win.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Campaign file (TOML). Relative paths inside it are relative to the file.
    ///
    /// Its keys are these flags' names (`poll-interval = "5s"`); a flag wins over the file. An unknown key or a
    /// value of the wrong type is an error naming the line (exit 78). Every key: docs/campaign-file.md.
    pub campaign: Option<PathBuf>,
    /// Contact list (CSV with a header row).
    ///
    /// Read whole before any call: each row is judged (invalid, duplicate, suppressed, …) and the list is kept in
    /// the journal, bound to the file's SHA-256, so a rerun on a changed list is refused (exit 78).
    #[arg(help_heading = "Contacts", long)]
    pub input: Option<PathBuf>,
    /// Name of the phone number column, case-insensitive [default: the first of phone, phone_number, mobile,
    /// tel, … that exists].
    ///
    /// Matched case-insensitively and trimmed; the column used is logged. It identifies the campaign's contacts, so
    /// it cannot change under a campaign in progress (exit 78).
    #[arg(help_heading = "Contacts", long)]
    pub phone_column: Option<String>,
    /// Text encoding of the contact list: auto, utf-8 or windows-1252 [default: auto].
    ///
    /// `auto` reads UTF-8 (with or without a BOM) when every byte is UTF-8, and otherwise Windows-1252 (what Excel
    /// writes on Windows), with a warning. Excel's "Unicode Text" (UTF-16 with a BOM) is recognised. Bytes are never
    /// replaced silently. The results are UTF-8.
    #[arg(help_heading = "Contacts", long)]
    pub encoding: Option<String>,
    /// Field delimiter: , ; | or tab [default: detected from the header].
    ///
    /// By default, the most frequent of `,` `;` and tab in the header line. The results use the same delimiter.
    #[arg(help_heading = "Contacts", long)]
    pub delimiter: Option<String>,
    /// Region for numbers written without a country code (ISO 3166 code) [default: US].
    ///
    /// A number written with its own country code is read by that country's rules whatever this says
    /// (`+49 157 4833 7887` stays a German mobile under US).
    #[arg(help_heading = "Contacts", long)]
    pub default_region: Option<String>,
    /// Gateway base URL, or `sim` for the built-in simulator [default: http://localhost:8155]. Repeatable: the
    /// campaign is spread over the gateways, and --lines is then the lines of each.
    ///
    /// A path prefix is kept (`http://gw/voicent`). A password in the URL, a query or a fragment is refused, and so
    /// is the same gateway twice. Given once per gateway, the flags replace the campaign file's `[[gateways]]` list.
    /// Each call request goes to the gateway with the largest share of its lines free; a call stays on the gateway
    /// that holds it, in this run and the next. `sim` may be given more than once: each is its own simulator.
    #[arg(help_heading = "Gateway", long)]
    pub gateway: Vec<String>,
    /// Name of the IVR application deployed on the gateway (required).
    ///
    /// Sent as `startapp` on every call request. A run whose app differs from the campaign's last run warns, and
    /// the results' history then names the app of every call.
    #[arg(help_heading = "Gateway", long)]
    pub app: Option<String>,
    /// Most calls outstanding (requested, not yet final) at once on each gateway: its lines [default: 4].
    ///
    /// Set it to the gateway's phone lines, so a batch does not pile calls into the gateway's queue that keep
    /// dialing after the run stops. Whatever the lines, at most 128 call requests and 128 status or remove requests
    /// are in flight to one gateway at once.
    #[arg(help_heading = "Gateway", long, allow_hyphen_values = true)]
    pub lines: Option<String>,
    /// User for a gateway behind a proxy with basic auth; the password comes from the environment variable
    /// named by --gateway-password-env (never from a flag or file, so it stays out of `ps` and the shell history).
    #[arg(help_heading = "Gateway", long)]
    pub gateway_user: Option<String>,
    /// Environment variable holding the gateway password [default: IVR_GATEWAY_PASSWORD].
    ///
    /// In a systemd unit, load it with EnvironmentFile= from a root-only file. Credentials the gateway refuses
    /// (HTTP 401, 403, 407) stop the run at once (exit 78).
    #[arg(help_heading = "Gateway", long)]
    pub gateway_password_env: Option<String>,
    /// A CA certificate (PEM) to trust, besides the system's, for an https gateway behind a proxy.
    ///
    /// Certificates are always checked, against the system's trust store and this one.
    #[arg(help_heading = "Gateway", long)]
    pub ca_cert: Option<PathBuf>,
    /// Deadline for one HTTP request to the gateway, connect to last byte [default: 15s]. A call request that
    /// times out after being sent ends `unknown`.
    #[arg(help_heading = "Gateway", long)]
    pub request_timeout: Option<String>,
    /// Stop (exit 75, rerun to resume) when the gateway stays unreachable this long [default: 10m].
    ///
    /// Unreachable means refused connections, connect timeouts, 503s, or a proxy's 502 and 504. Meanwhile a breaker
    /// probes the gateway one request at a time, contacts waiting spend none of their retries, and no poll deadline
    /// writes a call off. With several gateways, the run stops only when every one has been unreachable this long.
    #[arg(help_heading = "Gateway", long)]
    pub max_outage: Option<String>,
    /// A gateway no longer listed whose calls are still open: write those calls off as `unknown` (repeatable).
    /// Check that gateway before calling any of them again.
    ///
    /// Without it, a rerun that no longer lists such a gateway is refused (exit 78, naming it). The write-off is
    /// recorded as an operator action. Naming a gateway the run still lists is refused (exit 64); one with no open
    /// calls is warned about and changes nothing.
    #[arg(help_heading = "Gateway", long)]
    pub forget_gateway: Vec<String>,
    /// Leave call records on the gateway instead of removing them once their result is saved.
    #[arg(help_heading = "Gateway", long)]
    pub keep_records: bool,
    /// Minutes after a request during which the gateway may still place the call [default: 10].
    ///
    /// The gateway's own retries happen within it, so the calling window keeps `firstocc` minutes plus
    /// --call-length free before it closes, and the default --poll-timeout is `firstocc` minutes plus 5 minutes.
    #[arg(help_heading = "Call request", long, allow_hyphen_values = true)]
    pub firstocc: Option<String>,
    /// How numbers are sent to the gateway: e164 (+14155550123), national (4155550123), digits (14155550123)
    /// [default: e164].
    ///
    /// E.164 is unambiguous on any trunk. The results' dialed_number column shows the number as sent.
    #[arg(help_heading = "Call request", long)]
    pub number_format: Option<String>,
    /// The number the called person sees, sent on every call request: 10 or 11 digits, or E.164.
    ///
    /// Spaces, dashes, dots and parentheses are dropped. 10 digits are a North American number, 11 a country code
    /// and number; a number that is not a valid phone number (`0000000000`, a made-up country code) is refused. Sent
    /// as the form field named by --caller-id-param.
    #[arg(help_heading = "Call request", long)]
    pub caller_id: Option<String>,
    /// Answer detection: 0 balanced, 1 more aggressive, 2 most aggressive, 3 off.
    ///
    /// Sent as the form field named by --detection-param.
    #[arg(help_heading = "Call request", long, allow_hyphen_values = true)]
    pub detection: Option<String>,
    /// A form field made from each contact's row, NAME=TEMPLATE, e.g. attendee={name} or appt="{date} {time}"
    /// (repeatable; `{{` and `}}` are literal braces). A field named like --caller-id-param overrides --caller-id.
    ///
    /// A `{column}` is matched to the list's header as the phone column is; cells are trimmed and sent as UTF-8.
    /// Flags come after the campaign file's `[fields]`, and replace a file field of the same name. A template naming
    /// a column the list lacks is refused before any call (exit 65). Names the runner sends itself (phoneno,
    /// startapp, firstocc, selfdelete, info) and fields that would change when, how often or what the gateway calls
    /// (schedule, calltime, retrymax, retrydelay, the recurrence fields, startexec, cmdline, sms, txt, audiofile,
    /// startvxml, starturl, exitvxml, exiturl, eocactions, reqid) are refused (exit 64). A cell with a line break
    /// makes its row invalid: a gateway field is one line.
    #[arg(help_heading = "Call request", long)]
    pub field: Vec<String>,
    /// The call record's `info` text, a template like the fields' [default: "ivr-campaign <campaign> row <n>"].
    #[arg(help_heading = "Call request", long)]
    pub info: Option<String>,
    /// Fields a row must not leave empty: a row whose value is empty is `invalid` (comma-separated).
    ///
    /// Without it, a row whose value is empty is called with the field empty.
    #[arg(help_heading = "Call request", long, value_delimiter = ',')]
    pub require_fields: Option<Vec<String>>,
    /// The form field name the caller ID is sent as [default: callerid].
    ///
    /// No published source confirms the gateway's name for it: check your gateway's documentation.
    #[arg(help_heading = "Call request", long)]
    pub caller_id_param: Option<String>,
    /// The form field name the detection level is sent as [default: detection].
    #[arg(help_heading = "Call request", long)]
    pub detection_param: Option<String>,
    /// Call requests per second or minute, e.g. `5/s`, `90/m` [default: 1/s].
    ///
    /// Or `unlimited`. With several gateways, the campaign's total; a gateway of the file's `[[gateways]]` may
    /// have its own cap besides.
    #[arg(help_heading = "Pacing", long, allow_hyphen_values = true)]
    pub rate: Option<String>,
    /// Time between status polls of one call, e.g. `5s` [default: 5s].
    ///
    /// The gateway's documentation asks for a few seconds.
    #[arg(help_heading = "Pacing", long)]
    pub poll_interval: Option<String>,
    /// Status polls per second or minute across all calls of one gateway [default: 10/s].
    ///
    /// So that thousands of calls in flight cannot flood the gateway.
    #[arg(help_heading = "Pacing", long, allow_hyphen_values = true)]
    pub poll_rate: Option<String>,
    /// Give up polling a call this long after it was requested [default: firstocc minutes + 5m].
    ///
    /// A call still not final when read at or after this deadline is `unresolved`, and its record is removed,
    /// which cancels any further attempt. The deadline applies only to replies that say "not final yet", never
    /// while the gateway is unreachable. Shorter than --poll-interval is refused (exit 64).
    #[arg(help_heading = "Pacing", long)]
    pub poll_timeout: Option<String>,
    /// Retries of a call request the gateway refused with a 4xx status (nothing was scheduled) [default: 3].
    ///
    /// A refused connection or a 503 is an outage, not a refusal: it spends no retries. A 500, 502 or 504, or a
    /// page without a request id, may have scheduled the call: that contact is `unknown`, never retried.
    #[arg(help_heading = "Pacing", long, allow_hyphen_values = true)]
    pub request_retries: Option<String>,
    /// After the first interrupt, how long to keep polling calls already placed [default: 2m].
    ///
    /// On the first SIGINT or SIGTERM the run stops dialing, drains for this long, writes the results and exits
    /// 75 if rows remain. A second signal stops polling at once (requests already sent are answered and recorded
    /// first); a third leaves even those, `unknown`. Keep it shorter than systemd's TimeoutStopSec.
    #[arg(help_heading = "Pacing", long)]
    pub drain_timeout: Option<String>,
    /// Calling window in the recipient's local time, e.g. 09:00-20:00 [default: none].
    ///
    /// Checked just before each call request in the contact's own zone (from --timezone-column, else the number's
    /// prefix, else --timezone), keeping --firstocc minutes plus --call-length free before it closes. A number whose
    /// prefix spans several zones is called only when every one of them is inside the window. A row whose zone
    /// cannot be known is invalid.
    #[arg(help_heading = "Calling rules", long)]
    pub window: Option<String>,
    /// Days calls are allowed, e.g. mon-fri or mon,wed,fri [default: all].
    #[arg(help_heading = "Calling rules", long)]
    pub days: Option<String>,
    /// The recipients' IANA time zone when neither their row nor their number tells it, e.g. America/Chicago
    /// [default: none; the machine's zone is never used].
    ///
    /// Fixed offsets and abbreviations (EST, PST, UTC, GMT0, Etc/…) are refused with the zone to use: they ignore
    /// daylight saving time. The zones come from the IANA database built into the binary (--version names its
    /// release).
    #[arg(help_heading = "Calling rules", long)]
    pub timezone: Option<String>,
    /// Column holding each contact's IANA time zone (an empty cell means: from the number, else --timezone).
    ///
    /// An unknown zone makes its row invalid. Dropping the column on a rerun of a campaign it placed contacts by is
    /// refused (exit 78).
    #[arg(help_heading = "Calling rules", long)]
    pub timezone_column: Option<String>,
    /// Dates nobody is called on, in each recipient's own calendar, e.g. 2026-12-25,2027-01-01.
    #[arg(help_heading = "Calling rules", long, value_delimiter = ',')]
    pub skip_dates: Vec<String>,
    /// Contacts outside their window: `stop` leaves them not_attempted for the next run; `wait` waits for the
    /// window to open [default: stop].
    ///
    /// `stop` suits a nightly timer: the run exits 75 with the rest left for the next start.
    #[arg(help_heading = "Calling rules", long)]
    pub outside_window: Option<String>,
    /// Expected length of a call, kept free before the window closes and used by the forecast [default: 2m].
    #[arg(help_heading = "Calling rules", long)]
    pub call_length: Option<String>,
    /// Suppression list: a CSV with a phone column or one number per line (repeatable).
    ///
    /// Read again on every run and applied to every contact not yet called, so an opt-out that arrives between two
    /// nights still counts. `#` comments, blank lines and a title line are allowed; any other entry that is not a
    /// phone number refuses the run (exit 65), naming the file and line.
    #[arg(help_heading = "Calling rules", long)]
    pub suppress: Vec<PathBuf>,
    /// Region for numbers without a country code in the suppression lists [default: --default-region].
    #[arg(help_heading = "Calling rules", long)]
    pub suppress_region: Option<String>,
    /// Most calls to one number within --per, across campaigns (needs --per).
    ///
    /// Checked and recorded in the shared ledger in one transaction just before each call request (a recall
    /// counts), so overlapping campaigns cannot both call the same person. A number at its cap is `capped`.
    #[arg(help_heading = "Calling rules", long)]
    pub max_calls_per_number: Option<String>,
    /// The period of --max-calls-per-number, e.g. 24h.
    #[arg(help_heading = "Calling rules", long)]
    pub per: Option<String>,
    /// Ledger file shared by campaigns for --max-calls-per-number [default: ~/.local/state/ivr-campaign/ledger.sqlite].
    #[arg(help_heading = "Calling rules", long)]
    pub ledger: Option<PathBuf>,
    /// Outcomes called again later: failed (busy, no answer, too late), unresolved, no-response (made, but the
    /// IVR collected nothing: an answering machine, a hang-up); comma-separated.
    ///
    /// Each recall is a new call request, as safe as the first, after --recall-after and at most --max-attempts in
    /// all; the suppression lists, the cap and the window are checked again. A recall due after the window closes is
    /// left for the next run (exit 75). `unknown` calls are never recalled.
    #[arg(help_heading = "Recall", long, value_delimiter = ',')]
    pub recall_on: Option<Vec<String>>,
    /// Also call made calls again whose responses contain none of these answers, e.g. Confirm=1.
    ///
    /// Names match in any letter case, values exactly. An answer joined with `|` is refused (exit 64): it could never
    /// match.
    #[arg(help_heading = "Recall", long, value_delimiter = ',')]
    pub recall_unless: Option<Vec<String>>,
    /// The least time between the end of one call to a contact and the next request [default: 1h].
    ///
    /// A recall of an `unresolved` call waits at least --firstocc minutes plus 5 minutes after the earlier request,
    /// whatever this says.
    #[arg(help_heading = "Recall", long)]
    pub recall_after: Option<String>,
    /// Call requests per contact in all, the first included (3 = the first call and two recalls) [default: 3].
    #[arg(help_heading = "Recall", long, allow_hyphen_values = true)]
    pub max_attempts: Option<String>,
    /// The column that names a row across exports (an appointment id): each run takes the list as a new version.
    #[arg(
        help_heading = "Reminders",
        long,
        long_help = "The column that names a row across exports (an appointment id). With it, the same campaign (results and journal) takes a new version of the list on every run: rows are matched by key, new keys join, a key no longer in the list is `withdrawn` and its touches still to come end (a key that comes back in a later export is listed again: its touches not yet ended are called then, except one already made or ended by a --stop-on answer), and a key whose phone or fields changed uses the new values for its future calls. An empty or repeated key makes the row `invalid`. Without it, a changed list is refused."
    )]
    pub key_column: Option<String>,
    /// The column holding each appointment's date and time (needs --key-column and --remind-before).
    #[arg(
        help_heading = "Reminders",
        long,
        long_help = "The column holding each appointment's date and time, as practice systems write them: 2027-01-13 10:00, 2027-01-13T10:00:00, 01/13/2027 10:00 AM (or any form --appointment-format names; a time with an offset is taken as it is). A cell that cannot be read makes the row `invalid`, with the reason. Each appointment is then called at its touches (--remind-before), never after it has passed."
    )]
    pub appointment_column: Option<String>,
    /// strftime format of the appointment cells, e.g. `%d.%m.%Y %H:%M`.
    ///
    /// It must read a date and a time: one that does not (an unknown directive, `%Q`, `%H:%M` alone) is refused
    /// before any call (exit 64). A run in which no row's appointment could be read ends with exit 65, its rows
    /// `invalid` with the reason.
    #[arg(help_heading = "Reminders", long)]
    pub appointment_format: Option<String>,
    /// IANA zone the export's times are written in (the clinic's) [default: --timezone].
    #[arg(
        help_heading = "Reminders",
        long,
        long_help = "The IANA zone the export's appointment times are written in: the clinic's, not the patient's (each call still keeps the calling window in the person's own zone). Defaults to --timezone; one of them is required with --appointment-column."
    )]
    pub appointment_timezone: Option<String>,
    /// The touches, e.g. `48h,24h` (also `2d`).
    #[arg(
        help_heading = "Reminders",
        long,
        value_delimiter = ',',
        long_help = "The touches, as leads before the appointment, comma-separated: 48h,24h (or 2d,1d). A touch is due from appointment - lead and stays due until the next touch falls due (the last one: until appointment - --min-notice); a touch not made by then is skipped, never made late. At most one call per touch, plus recalls within the touch as the recall policy says, never past its end. Each run makes the touches due by then, whenever it starts: a late run or a missed night loses nothing still due."
    )]
    pub remind_before: Option<Vec<String>>,
    /// No reminder call closer to the appointment than this, e.g. `2h`, `90m` or `1d` (days as --remind-before reads them) [default: 2h].
    #[arg(help_heading = "Reminders", long)]
    pub min_notice: Option<String>,
    /// Answers that end an appointment's remaining touches, e.g. `confirm=1,confirm=2`.
    #[arg(
        help_heading = "Reminders",
        long,
        value_delimiter = ',',
        long_help = "Answers that end an appointment's remaining touches, comma-separated, read and matched as --recall-unless reads and matches them (names without case, values exactly): confirm=1,confirm=2. A made call with any one of them is the appointment's last reminder. An answer joined with `|` is refused (exit 64), as --recall-unless refuses it: it could never match."
    )]
    pub stop_on: Option<Vec<String>>,
    /// Rows with this column value are withdrawn, e.g. `status=Cancelled` (repeatable).
    #[arg(
        help_heading = "Reminders",
        long,
        long_help = "Rows whose column holds this value are `withdrawn` and not called (their remaining touches end), e.g. status=Cancelled. Repeatable; the value is compared exactly, after trimming spaces."
    )]
    pub skip_if: Vec<String>,
    /// Results CSV [default: <input stem>.results.csv next to the input].
    #[arg(help_heading = "Results", long)]
    pub output: Option<PathBuf>,
    /// Journal directory [default: <output>.state next to the output].
    ///
    /// Running the same command again resumes from it. A results file whose journal is missing refuses the run
    /// (exit 78), so that nobody is called twice.
    #[arg(help_heading = "Results", long)]
    pub state: Option<PathBuf>,
    /// IVR response names to give their own `response.<name>` column (comma-separated).
    #[arg(help_heading = "Results", long, value_delimiter = ',')]
    pub response_keys: Option<Vec<String>>,
    /// Write a machine-readable summary (JSON, schema ivr-campaign/summary/v1, fields in docs/nightly.md) to
    /// this file.
    #[arg(help_heading = "Results", long)]
    pub summary_json: Option<PathBuf>,
    /// Write the run's figures in the Prometheus text format to this file at the end of every run, replaced
    /// atomically (for node_exporter's textfile collector; metrics in docs/nightly.md).
    #[arg(help_heading = "Results", long)]
    pub metrics_file: Option<PathBuf>,
    /// Read everything and apply every rule, write each row's decision and a forecast, and call nobody.
    ///
    /// The same as the `validate` command.
    #[arg(help_heading = "Results", long)]
    pub dry_run: bool,
    /// Replaced by the `redial-unknown` command (refused with a message saying so).
    #[arg(long, hide = true)]
    pub redial_unknown: bool,
}

#[derive(Debug, Default, Args)]
pub struct SimulateArgs {
    /// Address to listen on [default: 127.0.0.1:8155].
    #[arg(long)]
    pub listen: Option<String>,
    /// Phone lines: calls dialing at once; the rest queue [default: 4].
    #[arg(long)]
    pub lines: Option<String>,
    /// Time from taking a line to the attempt's outcome [default: 2s].
    #[arg(long)]
    pub ring_delay: Option<String>,
    /// Extra line time of an answered call [default: 5s].
    #[arg(long)]
    pub call_duration: Option<String>,
    /// Wait before the gateway dials again after a `retry` attempt [default: 60s].
    #[arg(long)]
    pub retry_delay: Option<String>,
    /// Scenario file (TOML): outcome sequences by number pattern or weight.
    ///
    /// Rules match the number or the form fields a request carries, or are drawn by weight from the seed; each
    /// step is one dial attempt. A `[faults]` table scripts outages, 503s, lost and unreadable answers and a
    /// restart, as the --fault-* flags do. Every key: docs/simulator.md.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Append every request received to this file as JSON lines.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Seed for weighted outcomes and faults (overrides the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Share of call requests answered 503 without scheduling (0 to 1).
    #[arg(long)]
    pub fault_call_unavailable: Option<f64>,
    /// Share of call requests answered 400 without scheduling.
    #[arg(long)]
    pub fault_call_refused: Option<f64>,
    /// Share of call requests scheduled and then left without an answer (connection closed).
    #[arg(long)]
    pub fault_call_drop: Option<f64>,
    /// Share of call requests scheduled and then answered 500.
    #[arg(long)]
    pub fault_call_error: Option<f64>,
    /// Share of call requests scheduled and answered with a page without [ReqId=…].
    #[arg(long)]
    pub fault_call_reworded: Option<f64>,
    /// Share of status polls answered 500.
    #[arg(long)]
    pub fault_status_error: Option<f64>,
    /// Share of status polls answered with a page that is not a status reply.
    #[arg(long)]
    pub fault_status_garbage: Option<f64>,
    /// Delay answers by this long (see --fault-slow-rate).
    #[arg(long)]
    pub fault_slow: Option<String>,
    /// Share of answers delayed by --fault-slow [default: 1].
    #[arg(long)]
    pub fault_slow_rate: Option<f64>,
    /// Refuse connections for a while: AFTER+LASTING, e.g. 30s+2m (repeatable).
    #[arg(long)]
    pub fault_outage: Vec<String>,
    /// Restart once after this long, forgetting every call record.
    #[arg(long)]
    pub fault_restart_after: Option<String>,
    /// Require basic auth, as a gateway behind a protected proxy would: USER:PASSWORD.
    #[arg(long)]
    pub basic_auth: Option<String>,
    /// Serve https with this certificate chain (PEM; needs --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub campaign: StatusArgs,
    /// Where to write the report [default: <output stem>.report.html next to the results].
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Default, Args)]
pub struct StatusArgs {
    /// Campaign file (TOML) whose journal to read.
    pub campaign: Option<PathBuf>,
    /// Journal directory.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Results CSV (locates the journal next to it, as `run` does).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Contact list (locates the default results file, as `run` does).
    #[arg(long)]
    pub input: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_the_number_data_and_the_map_release() {
        let v = super::version();
        assert!(
            v.contains("libphonenumber number data 9.0.42")
                && v.contains("libphonenumber time-zone map 9.0.42"),
            "{v}"
        );
    }
}
