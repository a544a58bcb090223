//! The dry run of a rolling export: for each row, its appointment, which touch is due now and when the next
//! falls due, judged from the export and the clock as a run starting now would (`not_due`, `too_late`,
//! `withdrawn` and `invalid` rows are not called).

use std::collections::HashMap;

use csv::ByteRecord;
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::rules::touches::read_appointment;
use crate::settings::reminders::Reminders;

/// The columns the dry run adds for a rolling export.
pub const COLUMNS: [&str; 3] = ["appointment_at", "touch_due", "next_touch_at"];

/// Where the export's columns are.
pub struct Columns {
    key: usize,
    appointment: Option<usize>,
    skips: Vec<(usize, String, String)>,
    /// Keys seen so far, with their first row.
    seen: HashMap<String, u64>,
}

fn find(headers: &ByteRecord, name: &str, what: &str) -> Result<usize> {
    headers
        .iter()
        .position(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case(name.trim())
        })
        .ok_or_else(|| Error::Data(format!("the contact list has no column {name:?} ({what})")))
}

impl Columns {
    pub fn of(headers: &ByteRecord, r: &Reminders) -> Result<Columns> {
        Ok(Columns {
            key: find(headers, &r.key_column, "--key-column")?,
            appointment: match &r.appointments {
                Some(a) => Some(find(headers, &a.column, "--appointment-column")?),
                None => None,
            },
            skips: r
                .skip_if
                .iter()
                .map(|(c, v)| {
                    Ok((
                        find(headers, c, "--skip-if")?,
                        format!("{c}={v}"),
                        v.clone(),
                    ))
                })
                .collect::<Result<_>>()?,
            seen: HashMap::new(),
        })
    }
}

/// What the dry run says of one row of a rolling export.
pub struct Judged {
    /// A decision that replaces the rules' (`invalid`, `withdrawn`, `not_due`, `too_late`), with its detail.
    pub decision: Option<(&'static str, String)>,
    /// Said of the touch that is due, after the rules' own detail.
    pub touch_note: Option<String>,
    /// The cells of [`COLUMNS`].
    pub cells: [String; 3],
}

fn local(r: &Reminders, t: Timestamp) -> String {
    match &r.appointments {
        Some(a) => t
            .to_zoned_datetime(a.timezone.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        None => t.to_string(),
    }
}

/// Judges row `line` at `now`: its key, its appointment, and its touches.
pub fn judge(
    r: &Reminders,
    cols: &mut Columns,
    record: &ByteRecord,
    line: u64,
    now: Timestamp,
) -> Judged {
    let cell = |i: usize| {
        String::from_utf8_lossy(record.get(i).unwrap_or(b""))
            .trim()
            .to_string()
    };
    let mut j = Judged {
        decision: None,
        touch_note: None,
        cells: Default::default(),
    };
    let key = cell(cols.key);
    if key.is_empty() {
        j.decision = Some((
            "invalid",
            format!("no key: its {} cell is empty", r.key_column),
        ));
        return j;
    }
    if let Some(first) = cols.seen.get(&key) {
        j.decision = Some((
            "invalid",
            format!("the same key {key} as row {first}: an appointment is listed once"),
        ));
        return j;
    }
    cols.seen.insert(key, line);
    if let Some((_, skip, _)) = cols.skips.iter().find(|(i, _, v)| cell(*i) == *v) {
        j.decision = Some(("withdrawn", format!("withdrawn: {skip}")));
        return j;
    }
    let (Some(a), Some(at_col)) = (&r.appointments, cols.appointment) else {
        j.cells[1] = "1 of 1".into();
        j.touch_note = Some("a new key is called once, as soon as it is listed".into());
        return j;
    };
    let at = match read_appointment(&cell(at_col), a.format.as_deref(), &a.timezone) {
        Ok(t) => t,
        Err(why) => {
            j.decision = Some(("invalid", why));
            return j;
        }
    };
    j.cells[0] = local(r, at);
    let touches = a.timing.touches(at);
    let open = touches.iter().find(|t| t.open_at(now));
    let next = touches.iter().find(|t| t.due > now);
    if let Some(n) = next {
        j.cells[2] = local(r, n.due);
    }
    match (open, next) {
        (Some(t), _) => {
            j.cells[1] = format!("{} of {}", t.index + 1, touches.len());
            j.touch_note = Some(format!(
                "touch {} of {} ({} before), due until {}",
                t.index + 1,
                touches.len(),
                crate::types::Dur(a.timing.leads[t.index as usize].unsigned_abs()),
                local(r, t.end)
            ));
        }
        (None, Some(n)) => {
            j.decision = Some((
                "not_due",
                format!(
                    "touch {} of {} falls due at {}",
                    n.index + 1,
                    touches.len(),
                    local(r, n.due)
                ),
            ));
        }
        (None, None) => {
            j.decision = Some((
                "too_late",
                "the appointment has passed, or is within its min-notice: no touch is left".into(),
            ));
        }
    }
    j
}
