//! Settling a contact list once: its encoding, delimiter, header and phone column, in one pass that also
//! computes the digest binding the journal to the file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use csv::ByteRecord;
use sha2::{Digest, Sha256};

use super::*;
use crate::error::{Error, Result};
use crate::types::NumberFormat;

/// Names tried, in order, when no phone column is named.
pub const PHONE_CANDIDATES: [&str; 14] = [
    "phone",
    "phone_number",
    "phone number",
    "phonenumber",
    "phone_no",
    "mobile",
    "mobile_phone",
    "mobile number",
    "cell",
    "cellphone",
    "tel",
    "telephone",
    "number",
    "msisdn",
];

/// Text encoding of the contact list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Windows1252,
    /// What Excel saves as "Unicode Text"; recognised by its byte order mark.
    Utf16Le,
    Utf16Be,
}

/// `--encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingChoice {
    /// UTF-8 when every byte sequence is UTF-8, otherwise Windows-1252 (with a warning).
    Auto,
    Fixed(Encoding),
}

impl FromStr for EncodingChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => Ok(EncodingChoice::Auto),
            "utf-8" | "utf8" => Ok(EncodingChoice::Fixed(Encoding::Utf8)),
            // WHATWG: latin1 and iso-8859-1 mean windows-1252, which is what Windows tools write under those names.
            "windows-1252" | "cp1252" | "latin1" | "latin-1" | "iso-8859-1" => {
                Ok(EncodingChoice::Fixed(Encoding::Windows1252))
            }
            _ => Err(format!(
                "{s:?} is not a supported encoding; use auto, utf-8 or windows-1252"
            )),
        }
    }
}

/// Parses `--delimiter`: `,` `;` `tab` (or a literal tab) `|`.
pub fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        "," | ";" | "|" => Ok(s.as_bytes()[0]),
        _ => Err(format!("{s:?} is not a delimiter; use , ; | or tab")),
    }
}

/// How to read the list.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub encoding: EncodingChoice,
    pub delimiter: Option<u8>,
    /// `None`: try [`PHONE_CANDIDATES`].
    pub phone_column: Option<String>,
    pub timezone_column: Option<String>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            encoding: EncodingChoice::Auto,
            delimiter: None,
            phone_column: None,
            timezone_column: None,
        }
    }
}

/// A contact list, inspected: everything needed to read it again, row by row, any number of times.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub encoding: Encoding,
    pub delimiter: u8,
    /// The header row, decoded to UTF-8.
    pub headers: ByteRecord,
    pub phone_index: usize,
    pub timezone_index: Option<usize>,
    /// SHA-256 of the file's bytes.
    pub digest: String,
    /// Choices made for the operator (the phone column picked): logged at info level.
    pub notes: Vec<String>,
    /// Guesses the operator should check (an assumed encoding): logged as warnings.
    pub warnings: Vec<String>,
}

pub(super) fn no_input(path: &Path, e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NoInput(format!("contact list {} does not exist", path.display()))
    } else {
        Error::NoInput(format!("cannot open contact list {}: {e}", path.display()))
    }
}

pub(super) fn open_file(path: &Path) -> Result<File> {
    // Looked at before opening: opening a pipe blocks until something writes to it.
    let meta = std::fs::metadata(path).map_err(|e| no_input(path, &e))?;
    if meta.is_dir() {
        return Err(Error::NoInput(format!(
            "contact list {} is a directory",
            path.display()
        )));
    }
    if !meta.is_file() {
        // A pipe or `<(…)` can be read once; the list is read several times (digest, header, rows).
        return Err(Error::NoInput(format!(
            "contact list {} is not a regular file (a pipe or a device); save it to a file first",
            path.display()
        )));
    }
    File::open(path).map_err(|e| no_input(path, &e))
}

/// The byte order mark a UTF-16 file starts with.
pub(super) fn utf16_bom(path: &Path) -> Result<Option<Encoding>> {
    let mut head = [0u8; 2];
    let mut f = open_file(path)?;
    let n = f.read(&mut head).map_err(|e| no_input(path, &e))?;
    Ok(match (n, head) {
        (2, [0xff, 0xfe]) => Some(Encoding::Utf16Le),
        (2, [0xfe, 0xff]) => Some(Encoding::Utf16Be),
        _ => None,
    })
}

/// The SHA-256 of a file's bytes, as the journal binds it.
pub fn digest(path: &Path) -> Result<String> {
    scan(path).map(|(d, _, _)| d)
}

/// One pass over the bytes: the digest, and where (if anywhere) they stop being UTF-8.
pub(super) fn scan(path: &Path) -> Result<(String, Option<u64>, bool)> {
    let mut file = open_file(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut carry: Vec<u8> = Vec::new();
    let mut offset: u64 = 0;
    let mut first_bad: Option<u64> = None;
    let mut any = false;
    loop {
        let n = file.read(&mut buf).map_err(|e| {
            Error::NoInput(format!("cannot read contact list {}: {e}", path.display()))
        })?;
        if n == 0 {
            break;
        }
        any = true;
        hash.update(&buf[..n]);
        if first_bad.is_none() {
            carry.extend_from_slice(&buf[..n]);
            match std::str::from_utf8(&carry) {
                Ok(_) => {
                    offset += carry.len() as u64;
                    carry.clear();
                }
                Err(e) if e.error_len().is_none() => {
                    // A sequence split across reads: keep its start for the next chunk.
                    let good = e.valid_up_to();
                    offset += good as u64;
                    carry.drain(..good);
                }
                Err(e) => first_bad = Some(offset + e.valid_up_to() as u64),
            }
        }
    }
    if first_bad.is_none() && !carry.is_empty() {
        first_bad = Some(offset);
    }
    Ok((format!("sha256:{:x}", hash.finalize()), first_bad, any))
}

pub(super) fn decoded(file: File, encoding: Encoding) -> Box<dyn Read + Send> {
    let other = match encoding {
        Encoding::Utf8 => return Box::new(BufReader::with_capacity(1 << 16, file)),
        Encoding::Windows1252 => encoding_rs::WINDOWS_1252,
        // The decoder drops the byte order mark itself.
        Encoding::Utf16Le => encoding_rs::UTF_16LE,
        Encoding::Utf16Be => encoding_rs::UTF_16BE,
    };
    Box::new(BufReader::with_capacity(
        1 << 16,
        encoding_rs_io::DecodeReaderBytesBuilder::new()
            .encoding(Some(other))
            .build(file),
    ))
}

/// Picks the delimiter from the header line: the most frequent of `,` `;` tab outside quotes (comma on a tie).
pub(super) fn sniff_delimiter(header_line: &str) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for c in header_line.bytes() {
        if c == b'"' {
            quoted = !quoted;
        } else if !quoted {
            for (d, n) in counts.iter_mut() {
                if *d == c {
                    *n += 1;
                }
            }
        }
    }
    counts
        .iter()
        .fold(
            (b',', 0),
            |best, &(d, n)| if n > best.1 { (d, n) } else { best },
        )
        .0
}

pub(super) fn first_line(path: &Path, encoding: Encoding) -> Result<String> {
    let mut text = String::new();
    let mut r = decoded(open_file(path)?, encoding).take(1 << 16);
    r.read_to_string(&mut text)
        .map_err(|e| Error::Data(format!("contact list {}: {e}", path.display())))?;
    let text = text.trim_start_matches('\u{feff}');
    Ok(text.split(['\n', '\r']).next().unwrap_or("").to_string())
}

pub(super) fn column(headers: &ByteRecord, name: &str) -> Option<usize> {
    let want = name.trim();
    headers.iter().position(|h| {
        String::from_utf8_lossy(h)
            .trim()
            .trim_start_matches('\u{feff}')
            .eq_ignore_ascii_case(want)
    })
}

pub(super) fn column_list(headers: &ByteRecord) -> String {
    headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Settles encoding, delimiter and columns, and checks that the list has a header and at least one row.
pub fn inspect(path: &Path, opts: &ReadOptions) -> Result<Source> {
    let (digest, first_bad, any) = scan(path)?;
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    if !any {
        return Err(Error::Data(format!(
            "contact list {} is empty",
            path.display()
        )));
    }
    // A byte order mark says UTF-16 whatever `--encoding` says: no other reading of those bytes makes sense.
    let utf16 = utf16_bom(path)?;
    if utf16.is_some() {
        notes.push(format!(
            "{} is UTF-16 (Excel's \"Unicode Text\"); reading it as such",
            path.display()
        ));
    }
    let encoding = match (opts.encoding, first_bad) {
        _ if let Some(e) = utf16 => e,
        (EncodingChoice::Fixed(Encoding::Utf8), Some(at)) => {
            return Err(Error::Data(format!(
                "contact list {} is not valid UTF-8 (first bad byte at offset {at}); if Excel saved it, try --encoding windows-1252",
                path.display()
            )));
        }
        (EncodingChoice::Fixed(e), _) => e,
        (EncodingChoice::Auto, None) => Encoding::Utf8,
        (EncodingChoice::Auto, Some(at)) => {
            warnings.push(format!(
                "{} is not UTF-8 (byte offset {at}); reading it as Windows-1252, as Excel on Windows writes it (set --encoding to be sure)",
                path.display()
            ));
            Encoding::Windows1252
        }
    };
    let delimiter = match opts.delimiter {
        Some(d) => d,
        None => sniff_delimiter(&first_line(path, encoding)?),
    };
    let mut reader = Records::open(path, encoding, delimiter)?;
    let mut headers = ByteRecord::new();
    match reader.next(&mut headers) {
        Err(e) => {
            return Err(Error::Data(format!(
                "contact list {}: cannot read the header row: {e}",
                path.display()
            )));
        }
        Ok(Some(Row::TooLong { bytes })) => {
            return Err(Error::Data(format!(
                "contact list {}: the header row is {bytes} bytes, more than {} KiB: this is not a contact list",
                path.display(),
                MAX_ROW / 1024
            )));
        }
        Ok(_) => {}
    }
    if headers.is_empty()
        || headers
            .iter()
            .all(|h| h.iter().all(u8::is_ascii_whitespace))
    {
        return Err(Error::Data(format!(
            "contact list {} has no header row",
            path.display()
        )));
    }
    let phone_index = match &opts.phone_column {
        Some(name) => column(&headers, name).ok_or_else(|| {
            Error::Data(format!(
                "contact list {}: no phone column {:?} (columns: {})",
                path.display(),
                name.trim(),
                column_list(&headers)
            ))
        })?,
        None => {
            let found = PHONE_CANDIDATES
                .iter()
                .find_map(|c| column(&headers, c).map(|i| (i, *c)));
            let (i, _) = found.ok_or_else(|| {
                Error::Data(format!(
                    "contact list {}: no phone column (looked for {}; columns: {}); name it with --phone-column",
                    path.display(),
                    PHONE_CANDIDATES.join(", "),
                    column_list(&headers)
                ))
            })?;
            let used = String::from_utf8_lossy(&headers[i]).trim().to_string();
            notes.push(format!("phone numbers are read from column {used:?}"));
            i
        }
    };
    let timezone_index = match &opts.timezone_column {
        None => None,
        Some(name) => Some(column(&headers, name).ok_or_else(|| {
            Error::Data(format!(
                "contact list {}: no time zone column {:?} (columns: {})",
                path.display(),
                name.trim(),
                column_list(&headers)
            ))
        })?),
    };
    let mut record = ByteRecord::new();
    let has_rows = reader
        .next(&mut record)
        .map_err(|e| Error::Data(format!("contact list {}: {e}", path.display())))?
        .is_some();
    if !has_rows {
        return Err(Error::Data(format!(
            "contact list {} has a header and no contacts",
            path.display()
        )));
    }
    Ok(Source {
        path: path.to_path_buf(),
        encoding,
        delimiter,
        headers,
        phone_index,
        timezone_index,
        digest,
        notes,
        warnings,
    })
}

impl Source {
    /// The error for a row whose quote runs away with the rest of the list.
    pub fn runaway(&self, line: u64, from: u64, lines: u64) -> Error {
        Error::Data(format!(
            "contact list {}: row {line} (from line {from} of the file) has a cell spanning {lines} lines that takes other rows with it: a quote opened by mistake (never closed, or closed only by another row's quote); fix the quote",
            self.path.display()
        ))
    }

    /// A fresh reader positioned after the header.
    pub fn reader(&self) -> Result<Records> {
        let mut r = Records::open(&self.path, self.encoding, self.delimiter)?;
        let mut header = ByteRecord::new();
        r.next(&mut header)
            .map_err(|e| Error::Data(format!("contact list {}: {e}", self.path.display())))?;
        r.shape = Some((self.headers.len(), self.phone_index, self.delimiter));
        Ok(r)
    }

    /// Judges one row: its number and, when the list has a time zone column, its zone.
    pub fn judge(
        &self,
        record: &ByteRecord,
        read: Row,
        region: Region,
        format: NumberFormat,
    ) -> Judged {
        if let Row::TooLong { bytes } = read {
            return Judged {
                verdict: Verdict::Invalid(format!(
                    "the row is {bytes} bytes or more, over the {} KiB a row may have; it was not read whole (its cells are cut short here)",
                    MAX_ROW / 1024
                )),
                tz: None,
                note: None,
            };
        }
        let verdict = judge(record, self.headers.len(), self.phone_index, region, format);
        let note = match &verdict {
            Verdict::Call { .. } => record
                .get(self.phone_index)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|t| split_extension(t).1)
                .map(|ext| {
                    format!("extension {ext} is not dialed: the gateway calls the number only")
                }),
            Verdict::Invalid(_) => None,
        };
        let cell = self
            .timezone_index
            .and_then(|i| record.get(i))
            .map(|c| String::from_utf8_lossy(c).trim().to_string())
            .filter(|c| !c.is_empty());
        match (verdict, cell) {
            (Verdict::Call { .. }, Some(name)) if crate::zones::zone(&name).is_err() => {
                let why = crate::zones::zone(&name).err().unwrap_or_default();
                Judged {
                    verdict: Verdict::Invalid(format!("time zone column: {why}")),
                    tz: None,
                    note: None,
                }
            }
            (verdict, tz) => Judged { verdict, tz, note },
        }
    }

    /// The header row, with a BOM left on the first name by a decoder removed.
    pub fn clean_headers(&self) -> ByteRecord {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if i == 0 {
                    h.strip_prefix("\u{feff}".as_bytes()).unwrap_or(h)
                } else {
                    h
                }
            })
            .collect()
    }
}
