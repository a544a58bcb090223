//! `ivr-campaign report`: a self-contained HTML report of a campaign, read from its journal.
//!
//! One file with no external assets (inline CSS and SVG), so it can be mailed or opened from a share. It shows
//! the counts per outcome, calls over time by outcome, the answers to each IVR response key, and the rows that
//! need a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::Result;
use crate::gateway::protocol::Responses;
use crate::store::State;
use crate::store::journal;

/// Colours per outcome; final-and-fine in greens, needing attention in reds, open in greys.
fn colour(s: State) -> &'static str {
    match s.result() {
        State::Made => "#2e7d32",
        State::Failed => "#f9a825",
        State::Unresolved => "#ef6c00",
        State::Unknown | State::Intent => "#c62828",
        State::Error => "#8e0000",
        State::Invalid => "#6d4c41",
        State::Duplicate => "#8d6e63",
        State::Suppressed => "#5c6bc0",
        State::Capped => "#7e57c2",
        State::Dialed => "#90a4ae",
        State::Pending => "#cfd8dc",
        State::NotDue => "#eceff1",
        State::TooLate => "#a1887f",
        State::Withdrawn => "#bdbdbd",
    }
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

struct Row {
    line: u64,
    status: State,
    number: String,
    detail: String,
    responses: String,
}

/// Most attention rows listed in the report (the results CSV has them all).
const ATTENTION_ROWS: usize = 500;

/// Builds the report for the journal in `state_dir`.
pub fn build(state_dir: &Path) -> Result<String> {
    let conn = journal::open_read_only(&state_dir.join(journal::DB_FILE))?;
    let meta = |k: &str| -> String {
        journal::meta_on(&conn, k)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let (input, campaign) = (meta("input_name"), meta("campaign_id"));
    let created = meta("created_at")
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let campaign_zone = meta("campaign_zone");
    let campaign_zone = (!campaign_zone.is_empty())
        .then(|| crate::zones::zone(&campaign_zone).ok())
        .flatten();
    let mut zones: std::collections::HashMap<String, Option<jiff::tz::TimeZone>> =
        std::collections::HashMap::new();
    // Calls by the hour it was where the recipient is (the first of their zones), and how many had no zone.
    let mut by_hour = [0u64; 24];
    let mut hour_unknown = 0u64;
    // The counts every view shows, by the same definitions (a contact waiting for a recall under its last
    // call's outcome).
    let tally = crate::output::tally::Tally::read(&conn)?;
    let mut attention: Vec<Row> = Vec::new();
    let mut attention_total = 0u64;
    // key → value → count, over made calls.
    let mut answers: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut made = 0u64;
    journal::report_rows(&conn, |c| {
        if let Some(at) = c.called_at_ms {
            let tz = match &c.tz {
                Some(names) => {
                    let first = names.split('&').next().unwrap_or("").to_string();
                    zones
                        .entry(first.clone())
                        .or_insert_with(|| crate::zones::zone(&first).ok())
                        .clone()
                }
                None => campaign_zone.clone(),
            };
            match (tz, jiff::Timestamp::from_millisecond(at)) {
                (Some(tz), Ok(t)) => by_hour[t.to_zoned_datetime(tz).hour() as usize] += 1,
                _ => hour_unknown += 1,
            }
        }
        let row = Row {
            line: c.line,
            status: c.shown.result(),
            number: c.dialed_number,
            detail: c.detail,
            responses: c.responses,
        };
        if row.status == State::Made {
            made += 1;
            for (k, v) in Responses::parse(&row.responses).iter() {
                *answers
                    .entry(k.to_string())
                    .or_default()
                    .entry(v.to_string())
                    .or_insert(0) += 1;
            }
        }
        if row.status.needs_attention() {
            attention_total += 1;
            if attention.len() < ATTENTION_ROWS {
                attention.push(row);
            }
        }
        Ok(())
    })?;
    let total = tally.total();
    // Calls over time: every call request that ended (each attempt of a recalled contact is one), by when it
    // ended and how; rows never called (suppressed, invalid, …) are not calls.
    let finished: Vec<(i64, State)> = journal::call_ends(&conn)?
        .into_iter()
        .map(|c| (c.at_ms, c.outcome.result()))
        .collect();
    // Contacts reached (made) by the call that reached them: 1st, 2nd, 3rd … attempt.
    let reached_on: BTreeMap<i64, u64> = journal::reached_on(&conn)?
        .into_iter()
        .map(|r| (r.attempt, r.contacts))
        .collect();

    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Campaign report: {title}</title>
<style>
body{{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1000px;color:#212121;padding:0 1rem}}
h1{{font-size:1.5rem;margin-bottom:.2rem}} h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e0e0e0;padding-bottom:.3rem}}
.meta{{color:#616161}} table{{border-collapse:collapse;width:100%}} td,th{{padding:.3rem .5rem;text-align:left;border-bottom:1px solid #eeeeee}}
th{{background:#fafafa}} td{{vertical-align:top}} td:nth-child(2){{white-space:nowrap}} td.n{{text-align:right;font-variant-numeric:tabular-nums}} .sw{{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.4rem;vertical-align:-1px}}
.cards{{display:flex;gap:1rem;flex-wrap:wrap}} .card{{border:1px solid #e0e0e0;border-radius:6px;padding:.6rem 1rem;min-width:8rem}} .card b{{display:block;font-size:1.6rem}}
svg text{{font:12px system-ui,sans-serif;fill:#424242}} .ok{{color:#2e7d32}} .warn{{color:#c62828}}
</style></head><body>
<h1>Campaign report</h1><p class="meta">List <b>{title}</b> · campaign {campaign} · journal created {created} · report made {now}</p>
"#,
        title = esc(&input),
        campaign = esc(&campaign),
        created = esc(&created),
        now = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
    );

    let n = |s: State| tally.count(s);
    let open = tally.open();
    let _ = write!(
        h,
        r#"<div class="cards"><div class="card">Rows<b>{total}</b></div><div class="card">Reached<b class="ok">{reached}</b></div><div class="card">Need a person<b class="{att_class}">{need}</b></div><div class="card">Left for a rerun<b>{open}</b></div></div>"#,
        // Every card counts results rows as the results file shows them (for a rolling
        // export, appointment keys, not their touches' calls).
        reached = tally.count(State::Made),
        need = tally.needs_attention(),
        att_class = if tally.needs_attention() > 0 {
            "warn"
        } else {
            "ok"
        },
    );
    if tally.waiting > 0 {
        let when = crate::output::tally::due_text(tally.next_due_ms)
            .map(|d| format!(", the next due {d}"))
            .unwrap_or_default();
        let _ = write!(
            h,
            r#"<p class="meta">Left for a rerun: not_attempted {}, in_progress {}, waiting for a recall {} (counted under their last call's outcome{}).</p>"#,
            n(State::Pending),
            n(State::Dialed),
            tally.waiting,
            esc(&when)
        );
    }

    // Counts per outcome: a table with a horizontal bar per status.
    h.push_str("<h2>Outcomes</h2><table><tr><th>Status</th><th class=\"n\">Rows</th><th class=\"n\">Share</th><th style=\"width:45%\"></th></tr>");
    for s in State::RESULTS {
        let c = n(s);
        if c == 0 {
            continue;
        }
        let share = c as f64 / total.max(1) as f64;
        let _ = write!(
            h,
            r#"<tr><td><span class="sw" style="background:{col}"></span>{name}</td><td class="n">{c}</td><td class="n">{pct:.1}%</td><td><svg width="100%" height="14" viewBox="0 0 100 14" preserveAspectRatio="none" role="img" aria-label="{pct:.1}%"><rect width="{w:.2}" height="14" fill="{col}"/></svg></td></tr>"#,
            col = colour(s),
            name = s.result_name(),
            pct = share * 100.0,
            w = share * 100.0,
        );
    }
    h.push_str("</table>");

    if reached_on.keys().any(|a| *a > 1) {
        h.push_str("<h2>Reached on which call</h2><table><tr><th>Call</th><th class=\"n\">Contacts reached</th></tr>");
        for (attempt, n) in &reached_on {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{n}</td></tr>",
                ordinal(*attempt)
            );
        }
        h.push_str("</table>");
    }

    let gateways = journal::gateways_on(&conn)?;
    if !gateways.is_empty() {
        h.push_str("<h2>Gateways</h2><table><tr><th>Gateway</th><th class=\"n\">Calls</th><th class=\"n\">Made</th><th class=\"n\">Failed</th><th class=\"n\">Other</th><th class=\"n\">Open</th><th class=\"n\">Unreachable</th></tr>");
        for g in &gateways {
            let of = |o: &str| g.outcomes.get(o).copied().unwrap_or(0);
            let other = g.calls.saturating_sub(g.open + of("made") + of("failed"));
            let down = if g.outage_ms == 0 {
                "—".to_string()
            } else {
                crate::types::Dur(std::time::Duration::from_millis(g.outage_ms)).to_string()
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{other}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&g.key),
                g.calls,
                of("made"),
                of("failed"),
                g.open,
                esc(&down)
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Calls over time</h2>");
    h.push_str(&timeline(&finished));

    h.push_str("<h2>Calls by the recipient's local hour</h2>");
    h.push_str(&hours(&by_hour, hour_unknown));

    h.push_str("<h2>Answers</h2>");
    if answers.is_empty() {
        h.push_str("<p class=\"meta\">No IVR responses were collected.</p>");
    }
    for (key, values) in &answers {
        let answered: u64 = values.values().sum();
        let _ = write!(
            h,
            "<h3>{}</h3><p class=\"meta\">{answered} of {made} reached calls answered</p><table><tr><th>Answer</th><th class=\"n\">Calls</th><th style=\"width:55%\"></th></tr>",
            esc(key)
        );
        let most = values.values().copied().max().unwrap_or(1).max(1);
        for (value, count) in values {
            let w = *count as f64 / most as f64 * 100.0;
            let _ = write!(
                h,
                r##"<tr><td>{}</td><td class="n">{count}</td><td><svg width="100%" height="14" viewBox="0 0 100 14" preserveAspectRatio="none"><rect width="{w:.2}" height="14" fill="#1565c0"/></svg></td></tr>"##,
                esc(value)
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Rows that need a person</h2>");
    if attention.is_empty() {
        h.push_str("<p class=\"ok\">None.</p>");
    } else {
        if attention_total > attention.len() as u64 {
            let _ = write!(
                h,
                "<p class=\"meta\">The first {} of {attention_total}; the results file lists them all.</p>",
                attention.len()
            );
        }
        h.push_str(
            "<table><tr><th class=\"n\">Row</th><th>Status</th><th>Number</th><th>Why</th></tr>",
        );
        for r in &attention {
            let _ = write!(
                h,
                r#"<tr><td class="n">{}</td><td><span class="sw" style="background:{}"></span>{}</td><td>{}</td><td>{}</td></tr>"#,
                r.line,
                colour(r.status),
                r.status.result_name(),
                esc(&r.number),
                esc(&r.detail)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"meta\" style=\"margin-top:2rem\">Made by ivr-campaign from the campaign journal. Statuses and exit codes are explained in docs/runbook.md.</p></body></html>\n");
    Ok(h)
}

/// Call requests per hour of the recipient's own clock, as inline SVG: what a calling window looked like from
/// where the people were.
fn hours(by_hour: &[u64; 24], unknown: u64) -> String {
    let total: u64 = by_hour.iter().sum();
    if total == 0 {
        return "<p class=\"meta\">No call has been requested yet.</p>".to_string();
    }
    let tallest = by_hour.iter().copied().max().unwrap_or(1).max(1);
    let (w, ht, left, bottom) = (960.0, 160.0, 40.0, 24.0);
    let col_w = (w - left) / 24.0;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {w} {total_h}" width="100%" role="img" aria-label="call requests by the recipient's local hour">"#,
        total_h = ht + bottom
    );
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{ht}" x2="{w}" y2="{ht}" stroke="#9e9e9e"/><text x="0" y="12">{tallest}</text><text x="0" y="{ht}">0</text>"##
    );
    for (hour, n) in by_hour.iter().enumerate() {
        let x = left + hour as f64 * col_w;
        if *n > 0 {
            let hh = *n as f64 / tallest as f64 * (ht - 4.0);
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{hh:.1}" fill="#1565c0"><title>{n} at {hour:02}:00-{hour:02}:59</title></rect>"##,
                x + 1.0,
                ht - hh,
                (col_w - 2.0).max(1.0)
            );
        }
        if hour % 3 == 0 {
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{}">{hour:02}</text>"#,
                ht + 18.0
            );
        }
    }
    svg.push_str("</svg>");
    if unknown > 0 {
        let _ = write!(
            svg,
            "<p class=\"meta\">{unknown} call requests went to recipients whose zone is not recorded.</p>"
        );
    }
    svg
}

/// `1st`, `2nd`, `3rd`, `4th` …
fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Stacked columns of finished calls per time bucket, by outcome, as inline SVG.
fn timeline(finished: &[(i64, State)]) -> String {
    let Some(first) = finished.iter().map(|f| f.0).min() else {
        return "<p class=\"meta\">No call has finished yet.</p>".to_string();
    };
    let last = finished.iter().map(|f| f.0).max().unwrap_or(first);
    let span = (last - first).max(1);
    const BUCKETS: usize = 48;
    let width_ms = (span / BUCKETS as i64).max(1) + 1;
    let mut buckets: Vec<BTreeMap<State, u64>> = vec![BTreeMap::new(); BUCKETS];
    for (t, s) in finished {
        let i = (((t - first) / width_ms) as usize).min(BUCKETS - 1);
        *buckets[i].entry(*s).or_insert(0) += 1;
    }
    let tallest = buckets
        .iter()
        .map(|b| b.values().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let (w, ht, left, bottom) = (960.0, 220.0, 40.0, 24.0);
    let col_w = (w - left) / BUCKETS as f64;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {w} {total_h}" width="100%" role="img" aria-label="finished calls over time by outcome">"#,
        total_h = ht + bottom
    );
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{ht}" x2="{w}" y2="{ht}" stroke="#9e9e9e"/><text x="0" y="12">{tallest}</text><text x="0" y="{ht}">0</text>"##
    );
    for (i, b) in buckets.iter().enumerate() {
        let mut y = ht;
        for s in State::RESULTS {
            let c = b.get(&s).copied().unwrap_or(0);
            if c == 0 {
                continue;
            }
            let hh = c as f64 / tallest as f64 * (ht - 4.0);
            y -= hh;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{cw:.1}" height="{hh:.1}" fill="{col}"><title>{c} {name}</title></rect>"#,
                x = left + i as f64 * col_w + 1.0,
                cw = (col_w - 2.0).max(1.0),
                col = colour(s),
                name = s.result_name()
            );
        }
    }
    let label = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{y}">{a}</text><text x="{w}" y="{y}" text-anchor="end">{b} UTC</text></svg>"#,
        y = ht + 18.0,
        a = label(first),
        b = label(last)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_gateway_text() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
