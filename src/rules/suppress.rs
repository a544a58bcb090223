//! Suppression lists: numbers that must not be called (opt-outs, do-not-call registers).
//!
//! A file is a CSV with a phone column (found like the contact list's), or plain text with one number per
//! line (`#` starts a comment). Numbers are normalised like the contacts, so `(415) 555-0100` suppresses
//! `+14155550100`. They are applied on every run, to contacts not yet dialed: an opt-out that arrives between
//! two nights of one campaign still counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use phonenumber::country::Id as Region;

use crate::contacts::{self, ReadOptions, Verdict};
use crate::error::{Error, Result};
use crate::types::NumberFormat;

/// E.164 number → the file that suppresses it.
pub type Suppressed = HashMap<String, String>;

/// Loads every file; returns the set and how many entries could not be read as numbers.
pub fn load(files: &[PathBuf], region: Region) -> Result<(Suppressed, usize)> {
    let mut set = Suppressed::new();
    let mut unreadable = 0;
    for path in files {
        let name = path.display().to_string();
        for entry in entries(path)? {
            match contacts::normalise(&entry, region, NumberFormat::E164) {
                Verdict::Call { e164, .. } => {
                    set.entry(e164).or_insert_with(|| name.clone());
                }
                Verdict::Invalid(_) => unreadable += 1,
            }
        }
    }
    Ok((set, unreadable))
}

fn entries(path: &Path) -> Result<Vec<String>> {
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
        for rec in reader.byte_records() {
            let rec =
                rec.map_err(|e| Error::Data(format!("suppression list {}: {e}", path.display())))?;
            if let Some(cell) = rec.get(source.phone_index) {
                out.push(String::from_utf8_lossy(cell).into_owned());
            }
        }
        return Ok(out);
    }
    Ok(first
        .trim_start_matches('\u{feff}')
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_plain_lists_normalise_like_contacts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("optout.txt");
        std::fs::write(
            &plain,
            "# opt-outs\n(415) 555-2671\n+1 646 555 1000  # called in\nnot a number\n\n",
        )
        .expect("write");
        let csv = dir.path().join("dnc.csv");
        std::fs::write(&csv, "name;Mobile\nx;212-555-0199\n").expect("write");
        let (set, bad) = load(&[plain, csv], Region::US).expect("load");
        assert!(set.contains_key("+14155552671"));
        assert!(set.contains_key("+16465551000"));
        assert!(set["+12125550199"].ends_with("dnc.csv"));
        assert_eq!(bad, 1);
    }
}
