//! Reading the contact list: the header, the phone column, and a verdict for every row.
//!
//! Rows are read as bytes and written back to the results unchanged; only the phone cell is interpreted. A
//! row that cannot be called is data (an `invalid` result with its reason), never an abort.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use csv::ByteRecord;
use phonenumber::Mode;
use phonenumber::country::Id as Region;

use crate::config::NumberFormat;
use crate::error::{Error, Result};

/// An open contact list positioned after its header.
pub struct ContactList {
    pub reader: csv::Reader<BufReader<File>>,
    pub headers: ByteRecord,
    pub phone_index: usize,
}

/// Opens the list and finds the phone column by name (case-insensitive, trimmed; a UTF-8 BOM on the header is
/// stripped by the csv reader).
pub fn open(path: &Path, phone_column: &str) -> Result<ContactList> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoInput(format!("contact list {} does not exist", path.display()))
        } else {
            Error::NoInput(format!("cannot open contact list {}: {e}", path.display()))
        }
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(Error::NoInput(format!(
            "contact list {} is a directory",
            path.display()
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let headers = reader
        .byte_headers()
        .map_err(|e| {
            Error::Data(format!(
                "contact list {}: cannot read the header row: {e}",
                path.display()
            ))
        })?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(Error::Data(format!(
            "contact list {} is empty (no header row)",
            path.display()
        )));
    }
    let wanted = phone_column.trim();
    let phone_index = headers
        .iter()
        .position(|h| String::from_utf8_lossy(h).trim().eq_ignore_ascii_case(wanted))
        .ok_or_else(|| {
            let names: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).trim().to_string()).collect();
            Error::Data(format!(
                "contact list {}: no phone column {wanted:?} (columns: {}); name it with --phone-column",
                path.display(),
                names.join(", ")
            ))
        })?;
    Ok(ContactList {
        reader,
        headers,
        phone_index,
    })
}

/// What to do with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid number: its E.164 form (the duplicate key) and the form sent to the gateway.
    Call { e164: String, dial: String },
    /// Not callable, with the reason for the results file.
    Invalid(String),
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

/// Parses a phone cell with libphonenumber's rules and the default region.
pub fn normalise(text: &str, region: Region, format: NumberFormat) -> Verdict {
    let t = text.trim();
    if t.is_empty() {
        return Verdict::Invalid("no phone number".into());
    }
    if looks_scientific(t) {
        // 4.15555E+09: a spreadsheet turned the number into a float and dropped digits. Guessing would dial a
        // stranger.
        return Verdict::Invalid(format!(
            "{t:?} is in scientific notation (a spreadsheet converted it); digits are lost"
        ));
    }
    let number = match phonenumber::parse(Some(region), t) {
        Ok(n) => n,
        Err(e) => return Verdict::Invalid(format!("{t:?} is not a phone number ({e})")),
    };
    if !number.is_valid() {
        return Verdict::Invalid(format!(
            "{t:?} is not a valid number (default region {region:?})"
        ));
    }
    let e164 = number.format().mode(Mode::E164).to_string();
    let dial = match format {
        NumberFormat::E164 => e164.clone(),
        NumberFormat::Digits => e164.trim_start_matches('+').to_string(),
        NumberFormat::National => number
            .format()
            .mode(Mode::National)
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .collect(),
    };
    Verdict::Call { e164, dial }
}

fn looks_scientific(t: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(text: &str, region: Region, f: NumberFormat) -> (String, String) {
        match normalise(text, region, f) {
            Verdict::Call { e164, dial } => (e164, dial),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            call("(415) 555-2671", Region::US, NumberFormat::E164),
            ("+14155552671".into(), "+14155552671".into())
        );
        assert_eq!(
            call("415 555 2671", Region::US, NumberFormat::Digits).1,
            "14155552671"
        );
        assert_eq!(
            call("415.555.2671", Region::US, NumberFormat::National).1,
            "4155552671"
        );
        assert_eq!(
            call("020 7946 0018", Region::GB, NumberFormat::National).1,
            "02079460018"
        );
        assert_eq!(
            call("+44 20 7946 0018", Region::US, NumberFormat::E164).0,
            "+442079460018"
        );
    }

    #[test]
    fn invalid_numbers_say_why() {
        for t in [
            "",
            "  ",
            "abc",
            "12",
            "4.15555E+09",
            "1,5E+10",
            "+1 555 0100",
        ] {
            assert!(
                matches!(
                    normalise(t, Region::US, NumberFormat::E164),
                    Verdict::Invalid(_)
                ),
                "{t:?}"
            );
        }
        match normalise("4.15555E+09", Region::US, NumberFormat::E164) {
            Verdict::Invalid(r) => assert!(r.contains("scientific")),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn ragged_rows_are_invalid() {
        let rec = ByteRecord::from(vec!["a", "4155552671"]);
        assert!(
            matches!(judge(&rec, 3, 1, Region::US, NumberFormat::E164), Verdict::Invalid(r) if r.contains("2 fields"))
        );
        assert!(matches!(
            judge(&rec, 2, 1, Region::US, NumberFormat::E164),
            Verdict::Call { .. }
        ));
    }
}
