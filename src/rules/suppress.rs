//! Suppression lists: numbers that must not be called (opt-outs, do-not-call registers).
//!
//! A file is a CSV with a phone column (found like the contact list's), or plain text with one number per
//! line (`#` starts a comment; blank lines and a header line without digits, in any script, are allowed). Numbers are
//! normalised like the contacts, with the lists' own region for numbers written without a country code, so
//! `(415) 555-0100` suppresses `+14155550100`. They are applied on every run, to contacts not yet called: an
//! opt-out that arrives between two nights of one campaign still counts.
//!
//! An entry that cannot be read as a number is a person who asked not to be called and might be: the run is
//! refused, naming each file and line, until the entry is fixed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::contacts::{self, ReadOptions, Region, Verdict};
use crate::error::{Error, Result};
use crate::types::NumberFormat;

/// E.164 number → the file that suppresses it.
pub type Suppressed = HashMap<String, String>;

/// An entry that is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub file: PathBuf,
    /// 1-based line of the file (for a CSV: the data row, counting the header as line 1).
    pub line: u64,
    pub text: String,
    pub why: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {}: {:?} ({})",
            self.file.display(),
            self.line,
            self.text,
            self.why
        )
    }
}

/// Loads every file; returns the set, and the entries that could not be read.
pub fn read(files: &[PathBuf], region: Region) -> Result<(Suppressed, Vec<Unreadable>)> {
    let mut set = Suppressed::new();
    let mut unreadable = Vec::new();
    for path in files {
        let name = path.display().to_string();
        for (line, entry) in entries(path)? {
            match contacts::normalise(&entry, region, NumberFormat::E164) {
                Verdict::Call { e164, .. } => {
                    set.entry(e164).or_insert_with(|| name.clone());
                }
                Verdict::Invalid(why) => unreadable.push(Unreadable {
                    file: path.clone(),
                    line,
                    text: entry,
                    why,
                }),
            }
        }
    }
    Ok((set, unreadable))
}

/// Loads every file, refusing (exit 65) if any entry cannot be read.
pub fn load(files: &[PathBuf], region: Region) -> Result<Suppressed> {
    let (set, unreadable) = read(files, region)?;
    if unreadable.is_empty() {
        return Ok(set);
    }
    const SHOWN: usize = 5;
    let mut listed: Vec<String> = unreadable
        .iter()
        .take(SHOWN)
        .map(|u| u.to_string())
        .collect();
    if unreadable.len() > SHOWN {
        listed.push(format!("and {} more", unreadable.len() - SHOWN));
    }
    Err(Error::Data(format!(
        "suppression list entries that are not phone numbers (an opt-out that cannot be read is a person who might be called): {}; fix them (`validate` lists them all)",
        listed.join("; ")
    )))
}

fn entries(path: &Path) -> Result<Vec<(u64, String)>> {
    // A pipe blocks the open until something writes to it, and a CSV list is read twice.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(Error::NoInput(format!(
            "suppression list {} is not a regular file (a pipe, a device or a directory); save it to a file first",
            path.display()
        )));
    }
    let text = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NoInput(format!(
                "suppression list {} does not exist",
                path.display()
            ))
        } else {
            Error::NoInput(format!(
                "cannot read suppression list {}: {e}",
                path.display()
            ))
        }
    })?;
    let first = String::from_utf8_lossy(&text);
    let header = first
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let looks_csv = header.contains([',', ';', '\t'])
        || contacts::PHONE_CANDIDATES
            .iter()
            .any(|c| header.trim().eq_ignore_ascii_case(c));
    if looks_csv {
        let source = contacts::inspect(path, &ReadOptions::default())
            .map_err(|e| Error::Data(format!("suppression list: {e}")))?;
        let mut reader = source.reader()?;
        let mut out = Vec::new();
        let mut rec = csv::ByteRecord::new();
        let mut i = 0u64;
        while let Some(read) = reader
            .next(&mut rec)
            .map_err(|e| Error::Data(format!("suppression list {}: {e}", path.display())))?
        {
            i += 1;
            match read {
                contacts::Row::TooLong { bytes } => {
                    out.push((i + 1, format!("(a row of {bytes} bytes)")));
                    continue;
                }
                contacts::Row::Runaway { lines, .. } => {
                    out.push((i + 1, format!("(a quote never closed, over {lines} lines)")));
                    continue;
                }
                contacts::Row::Whole => {}
            }
            if let Some(cell) = rec.get(source.phone_index) {
                let cell = String::from_utf8_lossy(cell).trim().to_string();
                // An empty cell names nobody.
                if !cell.is_empty() {
                    out.push((i + 1, cell));
                }
            }
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut seen_entry = false;
    for (i, l) in first.trim_start_matches('\u{feff}').lines().enumerate() {
        let entry = l.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        // A title line before the first number ("Opt-outs", "number") names no one. A digit of any script
        // (full-width, Arabic-Indic) makes it an entry, judged like any other line: skipping it as a title
        // would call the person it names.
        if !seen_entry && !entry.chars().any(char::is_numeric) {
            seen_entry = true;
            continue;
        }
        seen_entry = true;
        out.push((i as u64 + 1, entry.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_plain_lists_normalise_like_contacts_and_name_what_they_cannot_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("optout.txt");
        std::fs::write(
            &plain,
            "Opt-outs\n# from the front desk\n(415) 555-2671\n+1 646 555 1000  # called in\nnot a number 5\n\n",
        )
        .expect("write");
        let csv = dir.path().join("dnc.csv");
        std::fs::write(&csv, "name;Mobile\nx;212-555-0199\ny;\nz;12\n").expect("write");
        let (set, bad) = read(&[plain.clone(), csv.clone()], Region::US).expect("read");
        assert!(set.contains_key("+14155552671"));
        assert!(set.contains_key("+16465551000"));
        assert!(set["+12125550199"].ends_with("dnc.csv"));
        let named: Vec<(PathBuf, u64)> = bad.iter().map(|u| (u.file.clone(), u.line)).collect();
        assert_eq!(named, vec![(plain.clone(), 5), (csv.clone(), 4)]);
        let refused = load(&[plain, csv], Region::US).expect_err("refused");
        assert!(matches!(refused, Error::Data(_)));
        let text = refused.to_string();
        assert!(
            text.contains("optout.txt line 5") && text.contains("dnc.csv line 4"),
            "{text}"
        );
    }

    #[test]
    fn numbers_without_a_country_code_use_the_lists_region() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uk = dir.path().join("uk.txt");
        std::fs::write(&uk, "020 7946 0018\n").expect("write");
        let (set, bad) = read(std::slice::from_ref(&uk), Region::GB).expect("read");
        assert!(bad.is_empty());
        assert!(set.contains_key("+442079460018"));
        let (_, bad) = read(&[uk], Region::US).expect("read");
        assert_eq!(bad.len(), 1, "a UK number read as a US one is not a number");
    }
}
