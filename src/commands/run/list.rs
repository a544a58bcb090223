//! The list as this run reads it: every row judged, the call fields bound to its columns, what the journal
//! records of how it was read, and the refusals that keep a changed or lost journal from calling anyone again.

use super::*;

/// Reads every row and judges it, for the journal's creation.
pub fn judged_rows(
    source: &Source,
    cfg: &RunConfig,
    request: &Arc<Request>,
) -> Result<impl Iterator<Item = Result<NewContact>> + use<>> {
    let mut reader = source.reader()?;
    let request = request.clone();
    let (region, format) = (cfg.list.default_region, cfg.call.number_format);
    let source = source.clone();
    let input = cfg.files.input.display().to_string();
    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    let mut one_country = contacts::OneCountry::default();
    Ok(std::iter::from_fn(move || {
        // Rows are named by their 1-based data row number, which is their row in the results file. (csv-core's
        // line numbers run one low for CRLF files, which is what Excel writes.)
        let line = row + 1;
        match reader.next(&mut record) {
            Ok(None) => None,
            Err(e) => Some(Err(Error::Data(format!("contact list {input}: {e}")))),
            Ok(Some(contacts::Row::Runaway { from, lines })) => {
                Some(Err(source.runaway(line, from, lines)))
            }
            Ok(Some(read)) => {
                let mut judged = source.judge(&record, read, region, format);
                if let Err(e) = one_country.check(&judged.verdict, line, format) {
                    return Some(Err(e));
                }
                admit_fields(&mut judged, &request, &record);
                let c = NewContact {
                    row,
                    line,
                    record: encode_record(&record),
                    tz: placed(&judged),
                    verdict: judged.verdict,
                    note: judged.note,
                };
                row += 1;
                Some(Ok(c))
            }
        }
    }))
}

/// A callable row whose call fields cannot be made as configured (a required field empty, a line break in a
/// value, a caller ID that is not a number) is `invalid`, with the reason.
pub(crate) fn admit_fields(
    judged: &mut contacts::Judged,
    request: &Request,
    record: &csv::ByteRecord,
) {
    if matches!(judged.verdict, contacts::Verdict::Call { .. })
        && let Err(reason) = request.extras(Some(record))
    {
        judged.verdict = contacts::Verdict::Invalid(reason);
    }
}

/// The call fields bound to the list's columns (the journal's copy of the header row when the list is gone).
pub fn request_for(cfg: &RunConfig, headers: &csv::ByteRecord) -> Result<Arc<Request>> {
    Request::bind(&cfg.call.request, headers)
        .map(Arc::new)
        .map_err(|e| Error::Data(format!("contact list {}: {e}", cfg.files.input.display())))
}

/// A row's own zone: its column's, else its number's prefix's (the campaign's is applied when it is called).
pub fn placed(judged: &contacts::Judged) -> Option<(String, crate::zones::Source)> {
    use crate::zones::{self, Source};
    if let Some(tz) = &judged.tz {
        return Some((tz.clone(), Source::Column));
    }
    match &judged.verdict {
        contacts::Verdict::Call { e164, .. } => {
            zones::of_number(e164).map(|z| (zones::join(z), Source::Number))
        }
        contacts::Verdict::Invalid(_) => None,
    }
}

/// The settings that decide what a row of the list means, as the journal records them: `key=value` lines.
pub fn reading(source: &Source, cfg: &RunConfig) -> String {
    let header = |i: usize| {
        source
            .clean_headers()
            .get(i)
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .unwrap_or_default()
    };
    [
        ("phone-column", header(source.phone_index)),
        ("default-region", cfg.list.default_region.to_string()),
        ("encoding", format!("{:?}", source.encoding)),
        ("delimiter", (source.delimiter as char).to_string()),
        (
            "timezone-column",
            source.timezone_index.map_or("(none)".to_string(), header),
        ),
        ("number-format", format!("{:?}", cfg.call.number_format)),
        // Newer number data may read a cell as another number: the contacts not yet called are read again.
        ("number-data", contacts::NUMBER_DATA_RELEASE.to_string()),
        ("fields", cfg.call.request.reading()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Settings that say how rows are *identified* (which number a row is) cannot change under a campaign: its
/// duplicates and its calls were judged by them. Those that say how a row not yet called is *treated* (its
/// zone, how its number is sent) can: the contacts not yet called are read again from the journal's copy.
pub(super) const FIXED_READING: [&str; 4] =
    ["phone-column", "default-region", "encoding", "delimiter"];

/// Refuses a run that would read the list's rows as other numbers than the campaign did (`keys`: the reading
/// settings that say which number a row is), or drop the zone column its contacts are placed by.
pub(super) fn refuse_another_identity(
    cfg: &RunConfig,
    was_map: &std::collections::BTreeMap<String, String>,
    now_map: &std::collections::BTreeMap<String, String>,
    keys: &[&str],
) -> Result<()> {
    // A setting the journal does not record (written by an older release) is not a change of it.
    if let Some(fixed) = keys
        .iter()
        .find_map(|k| match (was_map.get(*k), now_map.get(*k)) {
            (Some(w), Some(n)) if w != n => Some(format!("{k} {w} → {n}")),
            _ => None,
        })
    {
        return Err(Error::Config(format!(
            "the journal in {} read the list another way ({fixed}): the contacts were told apart that way, so it cannot change under the campaign. Finish it with the settings it started with; another --output starts a new campaign, which calls everyone on the list again",
            cfg.files.state_dir.display()
        )));
    }
    // A zone column the campaign started with and a rerun leaves out is almost always a flag forgotten in a
    // cron line: without it, everyone not yet called would be placed by their number instead of their row.
    if let (Some(was), Some(now)) = (
        was_map.get("timezone-column"),
        now_map.get("timezone-column"),
    ) && was != "(none)"
        && now == "(none)"
    {
        return Err(Error::Config(format!(
            "the campaign in {} places its contacts by the time zone column {was:?}, and this run gives none: give --timezone-column {was} again (without it the contacts not yet called would be placed by their numbers)",
            cfg.files.state_dir.display()
        )));
    }
    Ok(())
}

/// The journal's record of how the list was read, as `key → value`.
pub(super) fn reading_map(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) async fn reread(
    journal: &crate::store::Journal,
    cfg: &RunConfig,
    request: &Request,
    source: &Source,
    was: &str,
    now: &str,
) -> Result<()> {
    let (was_map, now_map) = (reading_map(was), reading_map(now));
    let changed: Vec<String> = now_map
        .iter()
        .filter(|(k, v)| was_map.get(*k).is_none_or(|w| w != *v))
        .map(|(k, v)| {
            let was = was_map.get(k).map_or("(not recorded)", String::as_str);
            format!("{k} {was} → {v}")
        })
        .collect();
    refuse_another_identity(cfg, &was_map, &now_map, &FIXED_READING)?;
    // First every row is judged, and nothing written: a list the new settings cannot take (numbers of two
    // countries sent without their country code) is refused as a first run would refuse it.
    let mut one_country = contacts::OneCountry::default();
    let mut after = None;
    loop {
        let batch = journal.pending_records(after, 1024).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.0);
        for (_, line, record, _, _) in batch {
            let Some(rec) = journal::decode_record(&record) else {
                continue;
            };
            let judged = source.judge(
                &rec,
                contacts::Row::Whole,
                cfg.list.default_region,
                cfg.call.number_format,
            );
            one_country.check(&judged.verdict, line, cfg.call.number_format)?;
        }
    }
    let mut after = None;
    let mut reread = 0u64;
    let mut unplaced = 0u64;
    loop {
        let batch = journal.pending_records(after, 1024).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.0);
        for (row, _line, record, last_outcome, was_e164) in batch {
            let Some(rec) = journal::decode_record(&record) else {
                continue;
            };
            let mut judged = source.judge(
                &rec,
                contacts::Row::Whole,
                cfg.list.default_region,
                cfg.call.number_format,
            );
            admit_fields(&mut judged, request, &rec);
            // Newer number data can read a cell as another number (phonenumber 0.3 cut a leading 1 or 0 from
            // foreign numbers). Its duplicates, opt-outs and cap were judged by the old one, so it is not
            // called under either: the operator checks it and calls it in a new campaign.
            if let contacts::Verdict::Call { e164, .. } = &judged.verdict
                && *e164 != was_e164
            {
                judged.verdict = contacts::Verdict::Invalid(format!(
                    "read as {was_e164} when the campaign started and as {e164} now (libphonenumber {}): check the number, and call it in a new campaign if it is right",
                    contacts::NUMBER_DATA_RELEASE
                ));
            }
            match &judged.verdict {
                contacts::Verdict::Call { dial, .. } => {
                    journal.write_later(crate::store::Op::Reread {
                        row,
                        dial: dial.clone(),
                        tz: placed(&judged),
                    });
                    reread += 1;
                }
                contacts::Verdict::Invalid(reason) => {
                    let event = crate::store::Event::Unplace {
                        reason: reason.clone(),
                    }
                    .refusing(last_outcome);
                    if let Err(e) = journal.apply(row, event).await {
                        return Err(Error::Internal(e.to_string()));
                    }
                    unplaced += 1;
                }
            }
        }
    }
    journal.set_meta("reading", now.to_string()).await?;
    info!(
        changed = %changed.join(", "),
        contacts = reread,
        now_invalid = unplaced,
        "the list is read another way than when the campaign started; the contacts not yet called were read again"
    );
    Ok(())
}

/// Logs what people hear from this run's calls when it differs from the campaign's last run (or it is the
/// first), warning about a change: the people already called heard something else.
pub(super) async fn note_what_people_hear(
    journal: &crate::store::Journal,
    cfg: &RunConfig,
    now_ms: i64,
) -> Result<()> {
    use crate::store::heard::{self, Heard};
    let mut log = journal.read(|conn| Ok(heard::log(conn))).await?;
    let now = Heard::of(cfg, now_ms);
    if let Some(was) = log.last() {
        let changes = now.changes_since(was);
        if changes.is_empty() {
            return Ok(());
        }
        let called = journal.calls_placed().await?;
        warn!(
            changed = %changes.join("; "),
            calls_before = called,
            "what people hear changed since this campaign's last run: the {called} calls made so far used the earlier settings, the calls from now on use these (the results' history names each call's app); use another --output for a new campaign"
        );
    }
    log.push(now);
    let text = serde_json::to_string(&log).map_err(|e| Error::Internal(e.to_string()))?;
    journal.set_meta("heard", text).await
}

/// A results file with no usable journal beside it: the journal was deleted or emptied, and a new one would
/// call everyone again and overwrite the results. Refused before anything, whatever the file looks like now: a
/// spreadsheet that re-saved it (another delimiter, a renamed column, another encoding) changed its bytes, not
/// the calls it records. Moving the file away (or another `--output`) is how an operator starts over.
pub(super) fn refuse_a_lost_journal(cfg: &RunConfig) -> Result<()> {
    let db = cfg.files.state_dir.join(journal::DB_FILE);
    if journal::usable(&db) {
        return Ok(());
    }
    let holds_something =
        std::fs::metadata(&cfg.files.output).is_ok_and(|m| m.is_file() && m.len() > 0);
    if !holds_something {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{} exists (results of an earlier run, perhaps re-saved), but its journal {} is missing or empty: a new run would call everyone again. Restore the journal, or move {} away to start the campaign over",
        cfg.files.output.display(),
        db.display(),
        cfg.files.output.display()
    )))
}
