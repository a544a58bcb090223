//! A rolling export (`--key-column`): each run takes the list as the campaign's latest version and moves its
//! appointments' touches along by the run's clock, before the engine starts.

use super::*;

/// Takes the export as the rolling campaign's latest version and moves its touches along by the clock.
pub(super) async fn take_version(
    journal: &crate::store::Journal,
    cfg: &RunConfig,
    request: &Arc<Request>,
    source: &Source,
    reminders: &crate::settings::reminders::Reminders,
    clock: &Clock,
) -> Result<crate::store::touches::Taken> {
    use crate::store::touches;
    let rows = touches::listed_rows(
        judged_rows(source, cfg, request)?,
        &source.headers,
        reminders,
    )?;
    let (reminders, headers) = (reminders.clone(), source.headers.clone());
    let now_ms = clock.now().as_millisecond();
    let state_dir = cfg.files.state_dir.clone();
    let delimiter = i64::from(source.delimiter);
    let taken = journal
        .read(move |conn| {
            // Before anything is written: a plan the touches were not computed by is refused whole.
            touches::check_plan(conn, &reminders, &state_dir)?;
            touches::check_headers(conn, &headers)?;
            let taken = touches::take_version(conn, rows, &reminders, now_ms)?;
            // The results use the latest export's delimiter: an export re-saved with another one is the same
            // campaign, and its results read like it.
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('delimiter', ?1)",
                [delimiter],
            )?;
            Ok(taken)
        })
        .await?;
    info!(
        new = taken.new_keys,
        rescheduled = taken.rescheduled,
        withdrawn = taken.withdrawn,
        invalid = taken.invalid,
        due = taken.due,
        lapsed = taken.lapsed,
        stopped = taken.stopped,
        "took the export as its latest version"
    );
    Ok(taken)
}
