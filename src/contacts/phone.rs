//! A verdict for every number, by libphonenumber: called as written, or invalid with the reason.

use csv::ByteRecord;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumber, PhoneNumberFormat};

use super::*;
use crate::error::{Error, Result};
use crate::types::NumberFormat;

/// A row's verdict and its own time zone (from the time zone column, when the cell is not empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub verdict: Verdict,
    pub tz: Option<String>,
    /// Something about the row the operator should know, kept with its result (an extension not dialed).
    pub note: Option<String>,
}

/// A trailing extension (`x123`, `ext. 123`, `extension 123`, `#123`): the number before it, and the
/// extension's digits.
pub fn split_extension(text: &str) -> (&str, Option<&str>) {
    let t = text.trim_end();
    let digits_from = t
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + t[i..].chars().next().map_or(1, char::len_utf8));
    let digits = &t[digits_from..];
    if digits.is_empty() || digits_from == 0 {
        return (text, None);
    }
    let before = t[..digits_from].trim_end_matches([' ', '.', ':']);
    let lower = before.to_ascii_lowercase();
    for marker in ["extension", "ext", "x", "#"] {
        if lower.ends_with(marker) {
            let main = before[..before.len() - marker.len()].trim_end_matches([' ', ',', ';']);
            if main.chars().any(|c| c.is_ascii_digit()) {
                return (main, Some(digits));
            }
        }
    }
    (text, None)
}

/// What to do with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid number: its E.164 form (the duplicate key), the form sent to the gateway, and its country
    /// calling code.
    Call {
        e164: String,
        dial: String,
        country: u16,
    },
    /// Not callable, with the reason for the results file.
    Invalid(String),
}

/// With `--number-format national`, numbers are dialed without their country code, so two countries' numbers
/// can come out as the same digits (+33 2 12 34 56 78 and +39 02 1234 5678 are both 0212345678): a list with
/// numbers of more than one country is refused.
#[derive(Debug, Default)]
pub struct OneCountry {
    first: Option<(u16, u64)>,
}

impl OneCountry {
    pub fn check(&mut self, verdict: &Verdict, line: u64, format: NumberFormat) -> Result<()> {
        let (NumberFormat::National, Verdict::Call { country, .. }) = (format, verdict) else {
            return Ok(());
        };
        match self.first {
            None => {
                self.first = Some((*country, line));
                Ok(())
            }
            Some((c, _)) if c == *country => Ok(()),
            Some((c, first_line)) => Err(Error::Data(format!(
                "--number-format national dials numbers without their country code, and the list has numbers of +{c} (row {first_line}) and +{country} (row {line}): two people could be dialed as the same digits; use --number-format e164"
            ))),
        }
    }
}

/// Judges one row: field count, then the phone cell.
pub fn judge(
    record: &ByteRecord,
    width: usize,
    phone_index: usize,
    region: Region,
    format: NumberFormat,
) -> Verdict {
    if record.len() != width {
        return Verdict::Invalid(format!(
            "row has {} fields, the header has {width}",
            record.len()
        ));
    }
    let Some(cell) = record.get(phone_index) else {
        return Verdict::Invalid("no phone cell".into());
    };
    let Ok(text) = std::str::from_utf8(cell) else {
        return Verdict::Invalid("phone cell is not valid UTF-8 text".into());
    };
    normalise(text, region, format)
}

/// Parses a phone cell as libphonenumber does (rlibphonenumber, a port of its C++ library, with the
/// metadata release [`NUMBER_DATA_RELEASE`]) with the default region, and keeps the project's own rules on
/// top. An extension is left off (the caller notes it); any other letter makes the cell invalid, because
/// libphonenumber reads letters as keypad digits, and in a contact list a letter is a typo far more often than
/// a vanity number: `646-555-10O1` would call 646-555-1061, a stranger. A number in scientific notation is
/// refused: a spreadsheet dropped its last digits.
pub fn normalise(text: &str, region: Region, format: NumberFormat) -> Verdict {
    let t = split_extension(text.trim()).0.trim();
    if t.is_empty() {
        return Verdict::Invalid("no phone number".into());
    }
    if !looks_scientific(t) && t.chars().any(|c| c.is_alphabetic()) {
        return Verdict::Invalid(format!(
            "{t:?} has letters in it; write the number in digits (a letter would be dialed as a keypad digit)"
        ));
    }
    if looks_scientific(t) {
        // 4.15555E+09: a spreadsheet turned the number into a float and dropped digits. Guessing would dial a
        // stranger.
        return Verdict::Invalid(format!(
            "{t:?} is in scientific notation (a spreadsheet converted it); digits are lost"
        ));
    }
    let number = match parse(t, region) {
        Ok(n) => n,
        Err(e) => return Verdict::Invalid(format!("{t:?} is not a phone number ({e})")),
    };
    if !number.is_valid() {
        return Verdict::Invalid(format!(
            "{t:?} is not a valid number (default region {region})"
        ));
    }
    let e164 = number.format_as(PhoneNumberFormat::E164).into_owned();
    let dial = match format {
        NumberFormat::E164 => e164.clone(),
        NumberFormat::Digits => e164.trim_start_matches('+').to_string(),
        NumberFormat::National => number
            .format_as(PhoneNumberFormat::National)
            .chars()
            .filter(char::is_ascii_digit)
            .collect(),
    };
    Verdict::Call {
        e164,
        dial,
        country: u16::try_from(number.country_code).unwrap_or(0),
    }
}

/// The libphonenumber metadata release the number rules come from: rlibphonenumber 2.2.15 carries 9.0.42
/// (its README; `tests/phone_corpus.rs` checks it against numbers that 9.0.41 and 9.0.43 judge otherwise).
pub const NUMBER_DATA_RELEASE: &str = "9.0.42";

/// libphonenumber's parse: the country code a number is written with decides how its national part is read
/// (the default region's trunk prefix is never stripped from another country's number).
pub fn parse(
    text: &str,
    region: Region,
) -> std::result::Result<PhoneNumber, rlibphonenumber::ParseError> {
    PHONE_NUMBER_UTIL.parse(text, Some(region))
}

/// A region code as the metadata knows it (`US`, `GB`): two letters are not enough, the region must have
/// numbers of its own.
pub fn region(code: &str) -> Option<Region> {
    let r: Region = code.trim().to_ascii_uppercase().parse().ok()?;
    PHONE_NUMBER_UTIL
        .get_country_code_for_region(r)
        .is_some_and(|cc| cc > 0)
        .then_some(r)
}

pub(super) fn looks_scientific(t: &str) -> bool {
    let Some((mantissa, exp)) = t.split_once(['e', 'E']) else {
        return false;
    };
    let exp = exp.strip_prefix('+').unwrap_or(exp);
    !mantissa.is_empty()
        && mantissa
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        && mantissa.chars().any(|c| c == '.' || c == ',')
        && !exp.is_empty()
        && exp.chars().all(|c| c.is_ascii_digit())
}
