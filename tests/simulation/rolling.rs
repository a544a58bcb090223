//! Reminders in the simulation: a practice system's export that changes between runs (new, cancelled,
//! rescheduled earlier and later, unlisted and relisted appointments, changed phones, families sharing a
//! number, repeated keys and unreadable times), and the checkers of what reminders promise, computed from the
//! exports the harness wrote, not from the runner's plan.
//!
//! Every call request carries `info = "key <id> at <appointment cell>"`, so a call names the appointment it
//! was made for as the export listed it.

use std::collections::BTreeMap;

use ivr_campaign::cli::RunArgs;
use ivr_campaign::simulator::model::{Call, SimGateway};
use rand::Rng;
use rand::rngs::StdRng;

use crate::world::{AREAS, Person, pick};

/// The zone the export's appointment times are written in.
const CLINIC: &str = "America/New_York";
const MIN_NOTICE_H: i64 = 2;

/// One appointment as the harness keeps it.
#[derive(Debug, Clone)]
struct Appt {
    key: String,
    /// The instant of the appointment (ms).
    at_ms: i64,
    phone: usize,
    listed: bool,
    cancelled: bool,
    /// The appointment cell cannot be read (`invalid`).
    unreadable: bool,
}

/// One export as a process read it: each listed key's appointment cell, number and whether it is callable.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// key → (appointment cell, number in E.164, callable: listed, not cancelled, readable, first of its key)
    pub rows: BTreeMap<String, (String, String, bool)>,
    /// Keys in the order the export lists them (a repeated key twice).
    pub order: Vec<String>,
}

/// A seed's rolling campaign.
pub struct Rolling {
    appts: Vec<Appt>,
    /// The numbers, with their zones.
    pub numbers: Vec<(String, &'static [&'static str])>,
    /// Touch leads, longest first (hours).
    leads_h: Vec<i64>,
    /// Calls a touch may get: one, or the recall policy's attempts.
    pub per_touch: u32,
    /// Each process's export, by process index.
    pub exports: Vec<Export>,
    pub stop_on: Option<String>,
}

fn cell_of(at_ms: i64) -> String {
    let tz = jiff::tz::TimeZone::get(CLINIC).expect("the clinic's zone");
    jiff::Timestamp::from_millisecond(at_ms)
        .expect("an appointment time")
        .to_zoned_datetime(tz)
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// The appointment instant a cell names (in the clinic's zone; a time a clock change skips is the instant
/// after the gap, as the docs promise).
fn instant_of(cell: &str) -> Option<i64> {
    let tz = jiff::tz::TimeZone::get(CLINIC).ok()?;
    let dt = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", cell).ok()?;
    Some(dt.to_zoned_datetime(tz).ok()?.timestamp().as_millisecond())
}

/// An appointment time: from 1 h to 4 days after `now`, on the half hour, between 08:00 and 18:00 local.
fn draw_time(rng: &mut StdRng, now_ms: i64) -> i64 {
    let tz = jiff::tz::TimeZone::get(CLINIC).expect("the clinic's zone");
    let day =
        jiff::Timestamp::from_millisecond(now_ms + rng.random_range(3_600_000..4 * 86_400_000))
            .expect("a time")
            .to_zoned_datetime(tz.clone())
            .date();
    let (h, m) = (rng.random_range(8..18i8), *pick(rng, &[0i8, 30]));
    day.at(h, m, 0, 0)
        .to_zoned_datetime(tz)
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(now_ms)
}

impl Rolling {
    /// Draws the appointments and sets the reminder flags on `args`.
    pub fn new(rng: &mut StdRng, now_ms: i64, args: &mut RunArgs, per_touch: u32) -> Rolling {
        let numbers: Vec<(String, &'static [&'static str])> = (0..rng.random_range(3..=16usize))
            .map(|i| {
                let (area, zones) = AREAS[rng.random_range(0..AREAS.len())];
                (format!("+1{area}555{:04}", 200 + i), zones)
            })
            .collect();
        let n = rng.random_range(3..=20usize);
        // Families: a number drawn again is a second appointment on a phone already listed.
        let appts = (0..n)
            .map(|i| Appt {
                key: format!("A{}", 100 + i),
                at_ms: draw_time(rng, now_ms),
                phone: rng.random_range(0..numbers.len()),
                listed: true,
                cancelled: false,
                unreadable: false,
            })
            .collect();
        let leads = pick(rng, &["48h,24h", "24h", "72h,24h,3h"]).to_string();
        let leads_h = leads
            .split(',')
            .map(|l| l.trim_end_matches('h').parse().unwrap_or(24))
            .collect();
        let stop_on = rng.random_bool(0.5).then(|| "Confirm=1".to_string());
        args.key_column = Some("id".into());
        args.appointment_column = Some("appt".into());
        args.appointment_timezone = Some(CLINIC.into());
        args.remind_before = Some(leads.split(',').map(str::to_string).collect());
        args.min_notice = Some(format!("{MIN_NOTICE_H}h"));
        args.skip_if = vec!["status=Cancelled".into()];
        args.stop_on = stop_on.clone().map(|s| vec![s]);
        args.info = Some("key {id} at {appt}".into());
        Rolling {
            appts,
            numbers,
            leads_h,
            per_touch,
            exports: Vec::new(),
            stop_on,
        }
    }

    /// Whether the latest export lists `key` at `cell`, callable.
    pub fn is_current(&self, key: &str, cell: &str) -> bool {
        self.exports
            .last()
            .and_then(|e| e.rows.get(key))
            .is_some_and(|(c, _, callable)| c == cell && *callable)
    }

    /// The people the window checker knows: each number with its zones.
    pub fn people(&self) -> Vec<Person> {
        self.numbers
            .iter()
            .map(|(e, z)| Person {
                line: 0,
                e164: Some(e.clone()),
                zones: z.to_vec(),
            })
            .collect()
    }

    /// The practice system's night: appointments rescheduled, cancelled, unlisted, relisted, renumbered,
    /// booked; then the export written to `path` and kept as the version the next process reads.
    pub fn next_export(
        &mut self,
        rng: &mut StdRng,
        now_ms: i64,
        path: &std::path::Path,
        change: bool,
    ) {
        if change {
            for a in self.appts.iter_mut() {
                match rng.random_range(0..100) {
                    0..=7 => {
                        // Rescheduled, earlier or later (it may now be due at once, or have passed).
                        let by = rng.random_range(-48..48i64) * 1_800_000;
                        a.at_ms = (a.at_ms + by).max(now_ms + 1_800_000);
                    }
                    8..=12 => a.cancelled = !a.cancelled,
                    13..=17 => a.listed = !a.listed,
                    18..=20 => a.phone = rng.random_range(0..self.numbers.len()),
                    21 => a.unreadable = !a.unreadable,
                    _ => {}
                }
            }
            for _ in 0..rng.random_range(0..3) {
                let i = self.appts.len();
                self.appts.push(Appt {
                    key: format!("A{}", 100 + i),
                    at_ms: draw_time(rng, now_ms),
                    phone: rng.random_range(0..self.numbers.len()),
                    listed: true,
                    cancelled: false,
                    unreadable: false,
                });
            }
        }
        let mut csv = String::from("id,name,phone,appt,status\n");
        let mut export = Export::default();
        let repeat = rng
            .random_bool(0.1)
            .then(|| rng.random_range(0..self.appts.len()));
        for (i, a) in self.appts.iter().enumerate() {
            if !a.listed {
                continue;
            }
            let cell = if a.unreadable {
                "TBD".to_string()
            } else {
                cell_of(a.at_ms)
            };
            let e164 = self.numbers[a.phone].0.clone();
            let status = if a.cancelled {
                "Cancelled"
            } else {
                "Scheduled"
            };
            let national = &e164[2..];
            let written = format!(
                "({}) {}-{}",
                &national[..3],
                &national[3..6],
                &national[6..]
            );
            let row = format!("{},Patient {},{written},{cell},{status}\n", a.key, a.key);
            csv.push_str(&row);
            let callable = !a.cancelled && !a.unreadable;
            export
                .rows
                .insert(a.key.clone(), (cell.clone(), e164.clone(), callable));
            export.order.push(a.key.clone());
            if repeat == Some(i) {
                // A repeated key: the first row stands; the second is `invalid`.
                csv.push_str(&row.replace("Scheduled", "Scheduled again"));
                export.order.push(a.key.clone());
            }
        }
        std::fs::write(path, csv).expect("write the export");
        self.exports.push(export);
    }

    /// The touches of an appointment at `at_ms`: (due, end) in ms, the last one ending at min-notice.
    fn touches(&self, at_ms: i64) -> Vec<(i64, i64)> {
        let last_end = at_ms - MIN_NOTICE_H * 3_600_000;
        let dues: Vec<i64> = self.leads_h.iter().map(|h| at_ms - h * 3_600_000).collect();
        dues.iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    *d,
                    dues.get(i + 1).copied().unwrap_or(last_end).min(last_end),
                )
            })
            .collect()
    }
}

/// A call's appointment: the key and the cell its `info` names.
pub fn appointment_of(c: &Call) -> Option<(String, String)> {
    let rest = c.info.strip_prefix("key ")?;
    let (key, cell) = rest.split_once(" at ")?;
    Some((key.to_string(), cell.to_string()))
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// What reminders promise, from the gateway's ledger and the exports: each call for an appointment the
/// export in force listed as callable, on its number, inside one of its touches by the runner's clock; at most
/// `per_touch` calls a touch; none after a stop answer the runner read; none for a key the export withdrew.
/// `process_of` names the process a gateway time falls in; `runner_ms` the runner's clock for a call.
pub fn check(
    rolling: &Rolling,
    sims: &[SimGateway],
    process_of: &dyn Fn(i64) -> Option<usize>,
) -> Result<(), String> {
    let mut calls: Vec<(Call, i64)> = Vec::new();
    // By the runner's clock, which a step may have moved after it decided, or by the gateway's (true) time.
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        for (i, c) in m.calls.iter().enumerate() {
            let runner = m
                .seen
                .iter()
                .find(|r| r.created == Some(i as u64))
                .map_or(c.created_ms, |r| r.runner_ms);
            calls.push((c.clone(), runner));
        }
    }
    calls.sort_by_key(|(c, _)| c.created_ms);
    let mut per_touch: BTreeMap<(String, String, usize), Vec<&Call>> = BTreeMap::new();
    let mut stopped: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (c, runner_ms) in &calls {
        let (key, cell) = appointment_of(c)
            .ok_or_else(|| format!("call {} names no appointment: {:?}", c.id, c.info))?;
        let p = process_of(c.created_ms)
            .ok_or_else(|| format!("call {} was made outside every process", c.id))?;
        let export = rolling
            .exports
            .get(p)
            .ok_or_else(|| format!("process {p} read no export"))?;
        let Some((listed_cell, e164, callable)) = export.rows.get(&key) else {
            return Err(format!(
                "withdrawn-called: call {} for {key} in process {p}, whose export does not list it",
                c.id
            ));
        };
        if !callable || *listed_cell != cell {
            return Err(format!(
                "withdrawn-called: call {} for {key} at {cell} in process {p}; the export listed {listed_cell} (callable: {callable})",
                c.id
            ));
        }
        if digits(e164) != digits(&c.phoneno) {
            return Err(format!(
                "wrong-person: call {} for {key} dialed {}, the export's number is {e164}",
                c.id, c.phoneno
            ));
        }
        let at = instant_of(&cell).ok_or_else(|| format!("harness: cell {cell:?} unreadable"))?;
        // The runner chose the touch by its own clock: a call it made for a later touch after a step forward
        // still falls in the earlier touch by the gateway's time, and is not that touch's second call. The
        // gateway's time counts only when the runner's is in no touch (a step between deciding and asking).
        let touches = rolling.touches(at);
        let within = |t: i64| touches.iter().position(|(due, end)| *due <= t && t < *end);
        let touch = within(*runner_ms)
            .or_else(|| within(c.created_ms))
            .ok_or_else(|| {
                format!(
                    "outside-touch: call {} for {key} at {cell} was requested at {} by the runner's clock, in none of its touches {:?}",
                    c.id,
                    jiff::Timestamp::from_millisecond(*runner_ms).map(|t| t.to_string()).unwrap_or_default(),
                    rolling.touches(at)
                )
            })?;
        if let Some(read) = stopped.get(&(key.clone(), cell.clone()))
            && *read <= c.created_ms
        {
            return Err(format!(
                "called-after-stop: call {} for {key} at {cell} after a stop answer read at {read}",
                c.id
            ));
        }
        let earlier = per_touch
            .entry((key.clone(), cell.clone(), touch))
            .or_default();
        // A touch is requested again only as a recall: once the runner knows how its last call ended.
        if let Some(a) = earlier.iter().find(|a| {
            !(a.final_read_ms.is_some_and(|t| t <= c.created_ms)
                || a.removed_ms.is_some_and(|t| t <= c.created_ms))
        }) {
            return Err(format!(
                "re-requested: {key} at {cell}, touch {touch}, requested again (id {}) though the runner never learned how call {} ended",
                c.id, a.id
            ));
        }
        earlier.push(c);
        if earlier.len() as u32 > rolling.per_touch {
            return Err(format!(
                "touch-repeated: {key} at {cell}, touch {touch}, requested {} times (at most {}); touches {:?}; calls (gateway ms, runner ms) {:?}",
                earlier.len(),
                rolling.per_touch,
                rolling.touches(at),
                calls
                    .iter()
                    .filter(|(o, _)| appointment_of(o) == Some((key.clone(), cell.clone())))
                    .map(|(o, r)| (o.created_ms, *r))
                    .collect::<Vec<_>>()
            ));
        }
        if let (Some(stop), Some(read)) = (&rolling.stop_on, c.final_read_ms)
            && c.outcome.as_deref() == Some("made")
            && c.responses.split('|').any(|a| a.eq_ignore_ascii_case(stop))
        {
            stopped.entry((key, cell)).or_insert(read);
        }
    }
    Ok(())
}

/// The results of a rolling campaign: every key of the latest export has its row.
pub fn results(rolling: &Rolling, ids: &[String]) -> Result<(), String> {
    let Some(latest) = rolling.exports.last() else {
        return Ok(());
    };
    for key in latest.rows.keys() {
        if !ids.contains(key) {
            return Err(format!(
                "row-lost: key {key} of the latest export has no results row"
            ));
        }
    }
    Ok(())
}
