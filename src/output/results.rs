//! The results CSV: a view of the journal, one row per input row in input order.
//!
//! Every cell comes from the journal: the input's own columns from the copy of each row the journal took when
//! the campaign started (so a list edited or deleted since cannot put one person's result on another's row),
//! ours from the contact's state. The file is written to a temporary file beside the target, fsynced, renamed
//! over it, and the directory fsynced, so there is always exactly one complete results file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::gateway::protocol::Responses;
use crate::store::State;
use crate::store::journal::{self, decode_record};

/// Columns appended after the input's own.
pub const COLUMNS: [&str; 12] = [
    "status",
    "req_id",
    "gateway",
    "responses",
    "attempts",
    "detail",
    "dialed_number",
    "dialed_at",
    "finished_at",
    "calls",
    "history",
    "recall_at",
];

/// What writing the results found.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Rows per status as the results show it (a contact waiting for a recall shows its last outcome).
    pub counts: BTreeMap<State, u64>,
    /// Contacts waiting for a recall, and the earliest one due.
    pub recalls_waiting: u64,
    pub next_recall_ms: Option<i64>,
    /// Reminder touches not yet due (a rolling export), and the earliest to fall due.
    pub touches_waiting: u64,
    pub next_touch_ms: Option<i64>,
    /// Keys with a touch due now that waits for its window (a rolling export): work left, but no recall.
    pub touches_due: u64,
}

/// Refuses a list that already has columns the results add (yesterday's results fed back as a list): the
/// results would carry two `status` columns, and a reader would take the wrong one.
/// `zones`: the results add `timezone` and `timezone_source` (a calling window is set).
pub fn check_columns(source: &crate::contacts::Source, zones: bool) -> Result<()> {
    let taken: Vec<String> = source
        .clean_headers()
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .filter(|h| {
            let l = h.to_ascii_lowercase();
            COLUMNS.contains(&l.as_str())
                || (zones && (l == "timezone" || l == "timezone_source"))
                || l.starts_with("response.")
        })
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    let lower: Vec<String> = taken.iter().map(|t| t.to_ascii_lowercase()).collect();
    if lower.iter().any(|t| t == "status") && lower.iter().any(|t| t == "req_id") {
        return Err(Error::Data(format!(
            "contact list {} is a results file (it has the columns {} that the results add); use the original list",
            source.path.display(),
            taken.join(", ")
        )));
    }
    Err(Error::Data(format!(
        "contact list {} has the column(s) {}, which the results add too: the results would have two columns of that name, and a reader would take the wrong one; rename them in the list (for example {})",
        source.path.display(),
        taken.join(", "),
        taken
            .iter()
            .map(|t| format!("{t} → list_{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Spreadsheets evaluate cells starting with these (OWASP CSV injection); gateway text gets a leading `'`.
pub fn neutralise(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// Gateway text without NUL bytes (spreadsheets and many CSV readers stop at one, hiding the rest of the file),
/// and with other control characters but tab turned into spaces (a status cell stays on one line).
pub fn clean(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.chars().any(|c| c.is_control() && c != '\t') {
        cell.chars()
            .filter(|c| *c != '\0')
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        cell.into()
    }
}

/// RFC 3339 in UTC with a fixed millisecond width, so the column sorts as text.
pub fn rfc3339(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// The directory a file goes in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks, before any call is placed, that the results file can be written where it is meant to go.
pub fn check_writable(output: &Path) -> Result<()> {
    let dir = dir_of(output);
    let probe = dir.join(format!(".ivr-campaign-probe-{}", std::process::id()));
    match File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::Output(format!(
            "cannot write results into {}: {e}",
            dir.display()
        ))),
    }
}

/// Takes the lock on a results file (a hidden `.<name>.lock` beside it), held for the whole run: two runs
/// writing the same results, even with different journals, would each call the whole list.
pub fn lock(output: &Path) -> Result<File> {
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results".into());
    let path = dir.join(format!(".{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Output(format!("cannot open lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(format!(
            "another ivr-campaign run is writing {} (it holds {}); wait for it to finish",
            output.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Output(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// What the results file shows besides the input's columns.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// IVR response names that get a `response.<name>` column.
    pub response_keys: Vec<String>,
    /// Show each row's zone(s) and where they came from (with a calling window).
    pub zones: bool,
    /// The campaign's zone name, for rows without their own.
    pub campaign_zone: Option<String>,
}

/// A temporary file beside the target, renamed over it when complete and removed if anything fails.
struct Atomic {
    tmp: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Atomic {
    fn new(target: &Path) -> Atomic {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "results.csv".into());
        Atomic {
            tmp: dir_of(target).join(format!(".{name}.tmp-{}", std::process::id())),
            target: target.to_path_buf(),
            done: false,
        }
    }

    fn commit(mut self, file: File) -> std::io::Result<()> {
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target)?;
        self.done = true;
        if let Ok(d) = File::open(dir_of(&self.target)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Atomic {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub use crate::settings::paths::not_a_file_to_replace;

/// Writes `path` atomically from what `fill` writes into it.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let out_err =
        |e: &dyn std::fmt::Display| Error::Output(format!("cannot write {}: {e}", path.display()));
    // Renamed over, a device or a pipe would be replaced by a plain file (`/dev/null` run as root), and a
    // directory cannot be: only a regular file, or nothing yet, is a target.
    if let Some(why) = not_a_file_to_replace(path) {
        return Err(out_err(&why));
    }
    let atomic = Atomic::new(path);
    let file = File::create(&atomic.tmp).map_err(|e| out_err(&e))?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    fill(&mut w)?;
    let file = w.into_inner().map_err(|e| out_err(&e.error()))?;
    atomic.commit(file).map_err(|e| out_err(&e))
}

/// Writes the results file from the journal on `conn`; returns the count of each result status.
pub fn write(conn: &Connection, output: &Path, view: &View) -> Result<Written> {
    let mut written = Written::default();
    write_atomically(output, |file| {
        written = rows_to(conn, file, output, view)?;
        Ok(())
    })?;
    Ok(written)
}

/// The counts the results file would show, without writing it: the summary of a run whose results file could
/// not be written still tells monitoring how the rows stand.
pub fn tally(conn: &Connection, view: &View) -> Result<Written> {
    rows_to(conn, std::io::sink(), Path::new("(none)"), view)
}

/// The results, row by row, into `file` (named `output` in messages).
fn rows_to(
    conn: &Connection,
    file: impl std::io::Write,
    output: &Path,
    view: &View,
) -> Result<Written> {
    if crate::store::touches::is_rolling(conn) {
        return super::reminders::rows_to(conn, file, output, view);
    }
    let (headers, delimiter) = journal::layout(conn)?;
    let width = headers.len();
    // A campaign whose app changed between runs: each call in the history names the app it used.
    let heard = crate::store::heard::log(conn);
    let out_err = |e: &dyn std::fmt::Display| {
        Error::Output(format!("cannot write results {}: {e}", output.display()))
    };
    let mut written = Written::default();
    {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            // The results open in the same spreadsheet as the input: keep its delimiter.
            .delimiter(delimiter)
            .from_writer(file);
        let mut header: ByteRecord = headers
            .iter()
            .enumerate()
            // A BOM a decoder left on the first name is not part of it.
            .map(|(i, h)| {
                if i == 0 {
                    h.strip_prefix("\u{feff}".as_bytes()).unwrap_or(h)
                } else {
                    h
                }
            })
            .collect();
        for c in COLUMNS {
            header.push_field(c.as_bytes());
        }
        for k in &view.response_keys {
            header.push_field(format!("response.{k}").as_bytes());
        }
        // With a calling window, say in which zone each row's window was judged and where that zone came from.
        if view.zones {
            header.push_field(b"timezone");
            header.push_field(b"timezone_source");
        }
        w.write_byte_record(&header).map_err(|e| out_err(&e))?;

        journal::result_rows(conn, |row| {
            let state = row.state;
            let last_outcome = row.last_outcome.filter(|_| state == State::Pending);
            let recall_at = row.recall_at_ms.filter(|_| state == State::Pending);
            // A contact waiting for a recall shows the outcome of its last call.
            let shown = last_outcome.unwrap_or(state);
            *written.counts.entry(shown.result()).or_insert(0) += 1;
            if last_outcome.is_some() {
                written.recalls_waiting += 1;
                written.next_recall_ms = match (written.next_recall_ms, recall_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            // This row's past calls.
            let history: Vec<String> = row
                .history
                .iter()
                .map(|call| {
                    let app = call
                        .intent_at_ms
                        .or(call.at_ms)
                        .and_then(|t| crate::store::heard::app_at(&heard, t))
                        .map_or(String::new(), |a| format!(" (app {a})"));
                    format!("{} {}{app}", call.outcome, rfc3339(call.at_ms))
                })
                .collect();
            let calls = history.len() + usize::from(matches!(state, State::Intent | State::Dialed));
            let req_id = row.req_id;
            let responses = row.responses;
            let attempts = row.attempts;
            let mut detail = row.detail;
            let dialed_number = row.dialed_number;
            let finished_at = row.finished_at_ms;
            // A request whose answer was lost has no request id, but it was sent: show when and to what number.
            let intent_at = row.intent_at_ms;
            let (tz, note, tz_source, gateway) = (row.tz, row.note, row.tz_source, row.gateway);
            let dialed_at = row
                .dialed_at_ms
                .or(intent_at.filter(|_| matches!(state, State::Unknown | State::Intent)));
            match state {
                State::Intent => {
                    detail = Some("the run stopped while the call request was in flight; the call may have been scheduled".into());
                }
                State::Dialed => {
                    detail = Some(
                        "called; no final status yet (rerun the same command to resume polling)"
                            .into(),
                    );
                }
                _ => {}
            }
            // Input columns as read, unchanged (ragged rows keep their own fields).
            let mut out = row
                .record
                .as_deref()
                .and_then(decode_record)
                .ok_or_else(|| {
                    Error::Journal(format!("the journal has no copy of row {}", row.row + 1))
                })?;
            // A short row is padded so the appended columns stay under their headers.
            for _ in out.len()..width {
                out.push_field(b"");
            }
            let mut past: Vec<String> = Vec::new();
            if out.len() > width {
                // A long row cannot keep its extra fields in place without shifting our columns: they go into
                // `detail` instead, so nothing the list held is lost.
                past = out
                    .iter()
                    .skip(width)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                out.truncate(width);
            }
            out.push_field(shown.result_name().as_bytes());
            out.push_field(req_id.unwrap_or_default().as_bytes());
            out.push_field(
                gateway
                    .filter(|_| intent_at.is_some() || dialed_at.is_some())
                    .unwrap_or_default()
                    .as_bytes(),
            );
            out.push_field(clean(&neutralise(&responses)).as_bytes());
            out.push_field(
                attempts
                    .filter(|a| *a > 0)
                    .map(|a| a.to_string())
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let past =
                (!past.is_empty()).then(|| format!("cells past the header: {}", past.join(" | ")));
            let detail = [detail.filter(|d| !d.is_empty()), note, past]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            out.push_field(clean(&neutralise(&detail)).as_bytes());
            out.push_field(
                dialed_number
                    .filter(|_| dialed_at.is_some())
                    .unwrap_or_default()
                    .as_bytes(),
            );
            out.push_field(rfc3339(dialed_at).as_bytes());
            out.push_field(rfc3339(finished_at.filter(|_| shown.is_final())).as_bytes());
            out.push_field(
                if calls > 0 {
                    calls.to_string()
                } else {
                    String::new()
                }
                .as_bytes(),
            );
            out.push_field(history.join("; ").as_bytes());
            out.push_field(rfc3339(recall_at).as_bytes());
            if !view.response_keys.is_empty() {
                let parsed = Responses::parse(&responses);
                for k in &view.response_keys {
                    out.push_field(clean(&neutralise(parsed.get(k).unwrap_or(""))).as_bytes());
                }
            }
            if view.zones {
                let (zone, source) = match (&tz, &view.campaign_zone) {
                    (Some(own), _) => (own.as_str(), tz_source.as_deref().unwrap_or("column")),
                    (None, Some(campaign)) => (campaign.as_str(), "campaign"),
                    (None, None) => ("", ""),
                };
                out.push_field(zone.as_bytes());
                out.push_field(source.as_bytes());
            }
            w.write_byte_record(&out).map_err(|e| out_err(&e))?;
            Ok(())
        })?;
        w.flush().map_err(|e| out_err(&e))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("Q1=2"), "Q1=2");
        assert_eq!(neutralise(""), "");
    }
}
