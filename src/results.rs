//! The results CSV: a view of the journal, one row per input row in input order.
//!
//! Written to a temporary file beside the target, fsynced, renamed over it, and the directory fsynced, so
//! there is always exactly one complete results file, whenever the run stops.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use csv::ByteRecord;

use crate::contacts::Source;
use crate::error::{Error, Result};
use crate::gateway::protocol::Responses;
use crate::journal::{self, State};

/// A row's status in the results file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Made,
    Failed,
    Unresolved,
    Unknown,
    Error,
    Invalid,
    Duplicate,
    Suppressed,
    Capped,
    /// Called, no final answer yet: the run stopped while polling. A rerun resumes polling.
    InProgress,
    /// Not reached before the run stopped. A rerun dials it.
    NotAttempted,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Made,
        Status::Failed,
        Status::Unresolved,
        Status::Unknown,
        Status::Error,
        Status::Invalid,
        Status::Duplicate,
        Status::Suppressed,
        Status::Capped,
        Status::InProgress,
        Status::NotAttempted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Made => "made",
            Status::Failed => "failed",
            Status::Unresolved => "unresolved",
            Status::Unknown => "unknown",
            Status::Error => "error",
            Status::Invalid => "invalid",
            Status::Duplicate => "duplicate",
            Status::Suppressed => "suppressed",
            Status::Capped => "capped",
            Status::InProgress => "in_progress",
            Status::NotAttempted => "not_attempted",
        }
    }

    pub fn from_state(s: State) -> Status {
        match s {
            State::Pending => Status::NotAttempted,
            // Only seen when a run was stopped at once mid-request; the next run turns it into `unknown` too.
            State::Intent => Status::Unknown,
            State::Dialed => Status::InProgress,
            State::Made => Status::Made,
            State::Failed => Status::Failed,
            State::Unresolved => Status::Unresolved,
            State::Unknown => Status::Unknown,
            State::Error => Status::Error,
            State::Invalid => Status::Invalid,
            State::Duplicate => Status::Duplicate,
            State::Suppressed => Status::Suppressed,
            State::Capped => Status::Capped,
        }
    }

    /// Final, but needs a person.
    pub fn needs_attention(self) -> bool {
        matches!(self, Status::Unresolved | Status::Unknown | Status::Error)
    }

    /// The run left work for a rerun.
    pub fn is_open(self) -> bool {
        matches!(self, Status::InProgress | Status::NotAttempted)
    }
}

/// Columns appended after the input's own.
pub const COLUMNS: [&str; 8] = [
    "status",
    "req_id",
    "responses",
    "attempts",
    "detail",
    "dialed_number",
    "dialed_at",
    "finished_at",
];

/// Spreadsheets evaluate cells starting with these (OWASP CSV injection); gateway text gets a leading `'`.
fn neutralise(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// RFC 3339 in UTC with a fixed millisecond width, so the column sorts as text.
fn rfc3339(ms: Option<i64>) -> String {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Checks, before any call is placed, that the results file can be written where it is meant to go.
pub fn check_writable(output: &Path) -> Result<()> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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

/// Writes the results file from the journal; returns the count of each status.
pub fn write(
    source: &Source,
    db_path: &Path,
    output: &Path,
    response_keys: &[String],
    campaign_zone: Option<&str>,
) -> Result<BTreeMap<Status, u64>> {
    let input = &source.path;
    let mut reader = source.reader()?;
    let width = source.headers.len();
    let conn = journal::open_read_only(db_path)?;
    let mut stmt = conn.prepare(
        "SELECT row, state, req_id, responses, attempts, detail, dialed_number, dialed_at, finished_at, intent_at, tz
         FROM contacts ORDER BY row",
    )?;
    let mut rows = stmt.query([])?;

    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results.csv".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let out_err = |e: &dyn std::fmt::Display| {
        Error::Output(format!("cannot write results {}: {e}", output.display()))
    };
    let file = File::create(&tmp).map_err(|e| out_err(&e))?;
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        // The results open in the same spreadsheet as the input: keep its delimiter.
        .delimiter(source.delimiter)
        .from_writer(BufWriter::with_capacity(1 << 16, file));

    let mut header = source.clean_headers();
    for c in COLUMNS {
        header.push_field(c.as_bytes());
    }
    for k in response_keys {
        header.push_field(format!("response.{k}").as_bytes());
    }
    // With a calling window, say in which zone each row's window was judged and where that zone came from.
    if campaign_zone.is_some() {
        header.push_field(b"timezone");
        header.push_field(b"timezone_source");
    }
    w.write_byte_record(&header).map_err(|e| out_err(&e))?;

    let mut counts = BTreeMap::new();
    let mut record = ByteRecord::new();
    let mut index: u64 = 0;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| Error::Data(format!("contact list {}: {e}", input.display())))?;
        if !more {
            break;
        }
        let row = rows.next()?.ok_or_else(|| {
            Error::Internal(format!(
                "the journal has no row {index}; the input grew after the journal was made"
            ))
        })?;
        let row_index: i64 = row.get(0)?;
        if row_index as u64 != index {
            return Err(Error::Internal(format!(
                "journal row {row_index} where row {index} was expected"
            )));
        }
        let state_text: String = row.get(1)?;
        let state = State::parse(&state_text).ok_or_else(|| {
            Error::Journal(format!("unknown state {state_text:?} in row {index}"))
        })?;
        let status = Status::from_state(state);
        *counts.entry(status).or_insert(0) += 1;
        let req_id: Option<String> = row.get(2)?;
        let responses: Option<String> = row.get(3)?;
        let attempts: Option<i64> = row.get(4)?;
        let mut detail: Option<String> = row.get(5)?;
        let dialed_number: Option<String> = row.get(6)?;
        let dialed_at: Option<i64> = row.get(7)?;
        let finished_at: Option<i64> = row.get(8)?;
        // A request whose answer was lost has no request id, but it was sent: show when and to what number.
        let intent_at: Option<i64> = row.get(9)?;
        let tz: Option<String> = row.get(10)?;
        let dialed_at =
            dialed_at.or(intent_at.filter(|_| matches!(state, State::Unknown | State::Intent)));
        if state == State::Intent {
            detail = Some("the run stopped while the call request was in flight; the call may have been scheduled".into());
        } else if state == State::Dialed {
            detail = Some(
                "called; no final status yet (rerun the same command to resume polling)".into(),
            );
        }
        let responses = responses.unwrap_or_default();

        // Input columns as read, unchanged (ragged rows keep their own fields).
        let mut out = record.clone();
        // A short row is padded so the appended columns stay under their headers.
        for _ in out.len()..width {
            out.push_field(b"");
        }
        if out.len() > width {
            // A long row cannot keep its extra fields in place without shifting our columns; they are named in
            // `detail` of the invalid row and left out of the cells.
            out.truncate(width);
        }
        out.push_field(status.as_str().as_bytes());
        out.push_field(req_id.unwrap_or_default().as_bytes());
        out.push_field(neutralise(&responses).as_bytes());
        out.push_field(
            attempts
                .filter(|a| *a > 0)
                .map(|a| a.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push_field(neutralise(&detail.unwrap_or_default()).as_bytes());
        out.push_field(
            dialed_number
                .filter(|_| dialed_at.is_some())
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push_field(rfc3339(dialed_at).as_bytes());
        out.push_field(rfc3339(finished_at.filter(|_| state.is_final())).as_bytes());
        if !response_keys.is_empty() {
            let parsed = Responses::parse(&responses);
            for k in response_keys {
                out.push_field(neutralise(parsed.get(k).unwrap_or("")).as_bytes());
            }
        }
        if let Some(zone) = campaign_zone {
            match &tz {
                Some(own) => {
                    out.push_field(own.as_bytes());
                    out.push_field(b"column");
                }
                None => {
                    out.push_field(zone.as_bytes());
                    out.push_field(b"campaign");
                }
            }
        }
        w.write_byte_record(&out).map_err(|e| out_err(&e))?;
        index += 1;
    }
    let buf = w.into_inner().map_err(|e| out_err(&e.error()))?;
    let file = buf.into_inner().map_err(|e| out_err(&e.error()))?;
    file.sync_all().map_err(|e| out_err(&e))?;
    drop(file);
    std::fs::rename(&tmp, output).map_err(|e| out_err(&e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(counts)
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
