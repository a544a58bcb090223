//! The golden corpus: every cell of `tests/data/phone-corpus.tsv` read as the runner reads a phone cell, against
//! what libphonenumber 9.0.42 (its Python port, `scripts/phone-corpus.py`) says of it under default regions US,
//! GB and DE. More corpora (other seeds, other spellings) can be checked by naming them, `:`-separated, in
//! `PHONE_CORPUS`; the figures are printed (`cargo test --test phone_corpus -- --nocapture`).

use std::collections::HashMap;

use ivr_campaign::contacts::{self, Region, Verdict};
use ivr_campaign::types::NumberFormat;
use ivr_campaign::zones;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberType};

const CORPUS: &str = include_str!("data/phone-corpus.tsv");

/// The reference's word on one cell under one default region.
struct Row<'a> {
    region: &'a str,
    cell: &'a str,
    valid: &'a str,
    e164: &'a str,
    kind: &'a str,
    /// `geo:` or `country:` and the zones, `&`-joined.
    zones: String,
}

fn rows(text: &str) -> Vec<Row<'_>> {
    let mut zones_of: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.starts_with("region\t") {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 6, "corpus line {}: {line:?}", n + 1);
        let zones = match f[5] {
            "=" => zones_of
                .get(f[3])
                .copied()
                .unwrap_or_else(|| panic!("corpus line {}: `=` before any zones", n + 1)),
            z => {
                if !z.is_empty() {
                    zones_of.insert(f[3], z);
                }
                z
            }
        };
        out.push(Row {
            region: f[0],
            cell: f[1],
            valid: f[2],
            e164: f[3],
            kind: f[4],
            zones: zones.to_string(),
        });
    }
    out
}

fn type_name(t: PhoneNumberType) -> &'static str {
    use PhoneNumberType as T;
    match t {
        T::FixedLine => "FIXED_LINE",
        T::Mobile => "MOBILE",
        T::FixedLineOrMobile => "FIXED_LINE_OR_MOBILE",
        T::TollFree => "TOLL_FREE",
        T::PremiumRate => "PREMIUM_RATE",
        T::SharedCost => "SHARED_COST",
        T::VoIP => "VOIP",
        T::PersonalNumber => "PERSONAL_NUMBER",
        T::Pager => "PAGER",
        T::UAN => "UAN",
        T::VoiceMail => "VOICEMAIL",
        T::Unknown => "UNKNOWN",
    }
}

/// The project's documented rules that refuse a cell libphonenumber reads as a valid number (docs/how-it-works.md, "Contact
/// lists from spreadsheets"): a letter that is not an extension marker, and scientific notation.
fn refusal_rule(reason: &str) -> Option<&'static str> {
    if reason.contains("has letters in it") {
        Some("letters")
    } else if reason.contains("scientific notation") {
        Some("scientific notation")
    } else {
        None
    }
}

#[derive(Default, Debug)]
struct Figures {
    rows: usize,
    reference_valid: usize,
    called: usize,
    refused_by_rule: HashMap<&'static str, Vec<String>>,
    placed: usize,
    not_placed_by_rule: HashMap<&'static str, usize>,
}

fn leak(zones: &str) -> Vec<&'static str> {
    zones
        .split('&')
        .map(|z| &*Box::leak(z.to_string().into_boxed_str()))
        .collect()
}

/// Checks every row; returns the figures, or the first disagreements.
fn check(text: &str) -> Result<Figures, Vec<String>> {
    let mut f = Figures::default();
    let mut wrong = Vec::new();
    let mut clock_cache: HashMap<String, bool> = HashMap::new();
    for r in rows(text) {
        f.rows += 1;
        let region: Region = contacts::region(r.region).expect("corpus region");
        let got = contacts::normalise(r.cell, region, NumberFormat::E164);
        let say = |what: &str, got: &Verdict| {
            format!(
                "{what}: {} {:?}: reference {} {} {} {}, runner {got:?}",
                r.region, r.cell, r.valid, r.e164, r.kind, r.zones
            )
        };
        if r.valid != "1" {
            if let Verdict::Call { .. } = got {
                wrong.push(say("an invalid number is called", &got));
            }
            continue;
        }
        f.reference_valid += 1;
        let e164 = match &got {
            Verdict::Invalid(why) => {
                match refusal_rule(why) {
                    Some(rule) => f
                        .refused_by_rule
                        .entry(rule)
                        .or_default()
                        .push(format!("{} {:?}", r.region, r.cell)),
                    None => wrong.push(say("a valid number is refused", &got)),
                }
                continue;
            }
            Verdict::Call { e164, .. } => e164.clone(),
        };
        f.called += 1;
        if e164 != r.e164 {
            wrong.push(say("a valid number is dialed as another number", &got));
            continue;
        }
        let kind = PHONE_NUMBER_UTIL
            .parse(&e164, None)
            .map(|n| type_name(n.get_type()))
            .unwrap_or("UNPARSED");
        if kind != r.kind {
            wrong.push(say(&format!("type {kind}"), &got));
        }
        let (how, reference) = r.zones.split_once(':').expect("zones are how:list");
        match zones::of_number(&e164) {
            Some(placed) => {
                f.placed += 1;
                if placed.join("&") != reference {
                    wrong.push(say(
                        &format!("placed in {} by its prefix", placed.join("&")),
                        &got,
                    ));
                }
            }
            None => {
                // Not placed by number: the row takes the zone column or the campaign's zone. Each such row
                // must be one of the documented rules; libphonenumber would have named a place for it.
                let one_clock = *clock_cache
                    .entry(reference.to_string())
                    .or_insert_with(|| zones::same_clock(&leak(reference)));
                let rule = if reference == "Etc/Unknown" {
                    Some("libphonenumber knows no zone")
                } else if !one_clock && (how == "country" || is_country_line(&e164, reference)) {
                    Some("a country-level match of several clocks places nobody")
                } else if r.kind == "MOBILE" && country_has_several_clocks(&e164) {
                    Some("a mobile of a country of several clocks")
                } else {
                    None
                };
                match rule {
                    Some(rule) => *f.not_placed_by_rule.entry(rule).or_default() += 1,
                    None => wrong.push(say("not placed", &got)),
                }
            }
        }
    }
    if wrong.is_empty() { Ok(f) } else { Err(wrong) }
}

/// Whether the zones the reference found by prefix are the whole country's (the number matched only its
/// country code).
fn is_country_line(e164: &str, zones: &str) -> bool {
    PHONE_NUMBER_UTIL
        .parse(e164, None)
        .ok()
        .and_then(|n| zones::country_line(n.country_code))
        .is_some_and(|c| c.join("&") == zones)
}

fn country_has_several_clocks(e164: &str) -> bool {
    PHONE_NUMBER_UTIL
        .parse(e164, None)
        .ok()
        .and_then(|n| zones::country_line(n.country_code))
        .is_some_and(|c| !zones::same_clock(c))
}

fn report(name: &str, f: &Figures) {
    let refused: usize = f.refused_by_rule.values().map(Vec::len).sum();
    eprintln!(
        "{name}: {} rows; reference valid {}; called {} (all as the reference dials them); refused {} ({:.3}%): {:?}; placed by number {} (all in the reference's zones); not placed {:?}",
        f.rows,
        f.reference_valid,
        f.called,
        refused,
        100.0 * refused as f64 / f.reference_valid.max(1) as f64,
        f.refused_by_rule,
        f.placed,
        f.not_placed_by_rule
    );
}

fn assert_corpus(name: &str, text: &str) -> Figures {
    let f = match check(text) {
        Ok(f) => f,
        Err(wrong) => panic!(
            "{name}: {} disagreements with libphonenumber, first ones:\n{}",
            wrong.len(),
            wrong[..wrong.len().min(20)].join("\n")
        ),
    };
    report(name, &f);
    let refused: usize = f.refused_by_rule.values().map(Vec::len).sum();
    assert!(
        refused * 1000 <= f.reference_valid * 3,
        "{name}: {refused} of {} valid numbers refused, more than 0.3%",
        f.reference_valid
    );
    f
}

#[test]
fn every_cell_is_read_as_libphonenumber_reads_it() {
    let f = assert_corpus("tests/data/phone-corpus.tsv", CORPUS);
    assert!(f.rows > 15_000 && f.reference_valid > 10_000, "{f:?}");
    // The only refusals of valid numbers are the documented rules, and the corpus holds each of them.
    let letters = &f.refused_by_rule["letters"];
    assert!(
        letters
            .iter()
            .any(|c| c.contains("1-800-FLOWERS") || c.contains("tel:")),
        "{letters:?}"
    );
    assert!(f.placed > 5_000, "{f:?}");
}

#[test]
#[ignore = "reads corpora generated by hand: PHONE_CORPUS=a.tsv:b.tsv cargo test --test phone_corpus -- --ignored"]
fn other_corpora_named_in_phone_corpus() {
    let paths = std::env::var("PHONE_CORPUS").expect(
        "PHONE_CORPUS names corpora made by scripts/phone-corpus.py --seed N [--spellings other]",
    );
    for path in paths.split(':').filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_corpus(path, &text);
    }
}

#[test]
fn the_number_data_is_release_9_0_42() {
    // Ranges that 9.0.41 and 9.0.43 judge otherwise: +61 496 (Australian mobiles, new in 9.0.42), +40 6
    // (Romanian mobiles, gone in 9.0.43), +49 1541 (German mobiles, new in 9.0.43).
    let valid = |t: &str| {
        matches!(
            contacts::normalise(t, Region::US, NumberFormat::E164),
            Verdict::Call { .. }
        )
    };
    assert!(valid("+61 496 012 345"));
    assert!(valid("+40 600 123 456"));
    assert!(!valid("+49 1541 0123456"));
    assert_eq!(contacts::NUMBER_DATA_RELEASE, "9.0.42");
    assert_eq!(zones::MAP_RELEASE, contacts::NUMBER_DATA_RELEASE);
    assert!(CORPUS.starts_with("# libphonenumber 9.0.42 "));
}
