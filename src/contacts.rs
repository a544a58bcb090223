//! Reading the contact list: encoding, delimiter, header, the phone column, and a verdict for every row.
//!
//! Lists come out of Excel and practice-management exports: UTF-8 with or without a BOM, or Windows-1252;
//! commas, semicolons (Excel in much of Europe) or tabs. [`inspect`] settles all of that once, in one pass
//! over the file that also computes the digest binding the journal to it. Rows are then read as text and
//! written back to the results unchanged; only the phone (and time zone) cells are interpreted. A row that
//! cannot be called is data (an `invalid` result with its reason), never an abort.

mod admission;

pub use admission::{Admission, admit};

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use csv::ByteRecord;
pub use rlibphonenumber::Region;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumber, PhoneNumberFormat};
use sha2::{Digest, Sha256};

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

fn no_input(path: &Path, e: &std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NoInput(format!("contact list {} does not exist", path.display()))
    } else {
        Error::NoInput(format!("cannot open contact list {}: {e}", path.display()))
    }
}

fn open_file(path: &Path) -> Result<File> {
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
fn utf16_bom(path: &Path) -> Result<Option<Encoding>> {
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
fn scan(path: &Path) -> Result<(String, Option<u64>, bool)> {
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

fn decoded(file: File, encoding: Encoding) -> Box<dyn Read + Send> {
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
fn sniff_delimiter(header_line: &str) -> u8 {
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

fn first_line(path: &Path, encoding: Encoding) -> Result<String> {
    let mut text = String::new();
    let mut r = decoded(open_file(path)?, encoding).take(1 << 16);
    r.read_to_string(&mut text)
        .map_err(|e| Error::Data(format!("contact list {}: {e}", path.display())))?;
    let text = text.trim_start_matches('\u{feff}');
    Ok(text.split(['\n', '\r']).next().unwrap_or("").to_string())
}

fn column(headers: &ByteRecord, name: &str) -> Option<usize> {
    let want = name.trim();
    headers.iter().position(|h| {
        String::from_utf8_lossy(h)
            .trim()
            .trim_start_matches('\u{feff}')
            .eq_ignore_ascii_case(want)
    })
}

fn column_list(headers: &ByteRecord) -> String {
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

/// The most bytes one row may have. A real row is a few hundred bytes; without a cap, one unterminated quote
/// or a 1 GB cell would be read into memory whole.
pub const MAX_ROW: usize = 1 << 20;
/// The most fields one row may have (`,,,,…` is otherwise small in bytes but not in memory).
pub const MAX_FIELDS: usize = 10_000;

/// The most lines one row's cells may span. More is almost always a quote that was opened and never closed,
/// which would swallow the rest of the list into one cell.
pub const MAX_LINES_IN_A_ROW: u64 = 50;

/// What reading one row found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Whole,
    /// Its cells span more than [`MAX_LINES_IN_A_ROW`] lines, starting at line `from` of the file.
    Runaway {
        from: u64,
        lines: u64,
    },
    /// Larger than [`MAX_ROW`] (or with more than [`MAX_FIELDS`] fields): the record holds what fitted, and
    /// the rest was read past.
    TooLong {
        bytes: u64,
    },
}

/// CSV records with a cap on their size (csv-core underneath, as the csv crate has, but bounded).
pub struct Records {
    core: csv_core::Reader,
    input: Box<dyn BufRead + Send>,
    out: Vec<u8>,
    ends: Vec<usize>,
    scratch: Vec<u8>,
    /// The list's width, phone column and delimiter, once its header is read: to tell a multi-line cell from
    /// a stray quote that swallowed rows.
    shape: Option<(usize, usize, u8)>,
    scratch_ends: Vec<usize>,
}

impl Records {
    fn open(path: &Path, encoding: Encoding, delimiter: u8) -> Result<Records> {
        Ok(Records {
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            input: Box::new(BufReader::with_capacity(
                1 << 16,
                decoded(open_file(path)?, encoding),
            )),
            out: vec![0; 1024],
            ends: vec![0; 64],
            scratch: vec![0; 1 << 14],
            scratch_ends: vec![0; 1024],
            shape: None,
        })
    }

    /// Reads the next row into `rec`; `None` at the end of the list.
    pub fn next(&mut self, rec: &mut ByteRecord) -> std::io::Result<Option<Row>> {
        use csv_core::ReadRecordResult as R;
        rec.clear();
        let first_line = self.core.line();
        let (mut outlen, mut endlen) = (0usize, 0usize);
        // Once over the cap, the rest of the row goes through the scratch buffers and is only counted.
        let mut over: Option<u64> = None;
        loop {
            let (res, nin, nout, nend) = {
                let input = self.input.fill_buf()?;
                match over {
                    None => self.core.read_record(
                        input,
                        &mut self.out[outlen..],
                        &mut self.ends[endlen..],
                    ),
                    Some(_) => {
                        self.core
                            .read_record(input, &mut self.scratch, &mut self.scratch_ends)
                    }
                }
            };
            self.input.consume(nin);
            match &mut over {
                None => {
                    outlen += nout;
                    endlen += nend;
                }
                Some(bytes) => *bytes += nout as u64,
            }
            match res {
                R::InputEmpty => {}
                R::OutputFull | R::OutputEndsFull if over.is_some() => {}
                R::OutputFull if self.out.len() < MAX_ROW => {
                    let grown = (self.out.len() * 2).min(MAX_ROW);
                    self.out.resize(grown, 0);
                }
                R::OutputEndsFull if self.ends.len() < MAX_FIELDS => {
                    let grown = (self.ends.len() * 2).min(MAX_FIELDS);
                    self.ends.resize(grown, 0);
                }
                R::OutputFull | R::OutputEndsFull => over = Some(outlen as u64),
                R::Record => {
                    let mut start = 0;
                    for &end in &self.ends[..endlen] {
                        rec.push_field(&self.out[start..end]);
                        start = end;
                    }
                    if over.is_some() && outlen > start {
                        // The field the cap cut through.
                        rec.push_field(&self.out[start..outlen]);
                    }
                    let lines = self.core.line().saturating_sub(first_line);
                    return Ok(Some(match over {
                        // csv-core numbers lines from 1: the line this row began on.
                        _ if lines > MAX_LINES_IN_A_ROW => Row::Runaway {
                            from: first_line,
                            lines,
                        },
                        None if lines > 1 && self.swallows_rows(rec) => Row::Runaway {
                            from: first_line,
                            lines,
                        },
                        None => Row::Whole,
                        Some(bytes) => Row::TooLong { bytes },
                    }));
                }
                R::End => return Ok(None),
            }
        }
    }
}

impl Records {
    /// Whether a cell spanning lines holds whole lines that look like rows of the list (as many cells as the
    /// header, a phone number in the phone column): a quote opened by mistake and closed by another one
    /// further down, which would merge those contacts into one.
    fn swallows_rows(&self, rec: &ByteRecord) -> bool {
        let Some((width, phone, delimiter)) = self.shape else {
            return false;
        };
        if width < 2 {
            return false;
        }
        let looks_like_phone = |cell: &[u8]| {
            let digits = cell.iter().filter(|b| b.is_ascii_digit()).count();
            (7..=15).contains(&digits)
                && cell
                    .iter()
                    .all(|b| b.is_ascii_digit() || b" +-().\t".contains(b))
        };
        rec.iter().any(|field| {
            field.split(|b| *b == b'\n').skip(1).any(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let cells: Vec<&[u8]> = line.split(|b| *b == delimiter).collect();
                cells.len() == width && cells.get(phone).is_some_and(|c| looks_like_phone(c))
            })
        })
    }
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
            Verdict::Call { e164, dial, .. } => (e164, dial),
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
    fn letters_are_typos_and_extensions_are_noted() {
        match normalise("646-555-10O1", Region::US, NumberFormat::E164) {
            Verdict::Invalid(r) => assert!(r.contains("letters"), "{r}"),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            normalise("1-800-FLOWERS", Region::US, NumberFormat::E164),
            Verdict::Invalid(_)
        ));
        for (text, ext) in [
            ("(415) 555-2671 x123", "123"),
            ("415 555 2671 ext. 9", "9"),
            ("415-555-2671 extension 45", "45"),
            ("+1 415 555 2671#77", "77"),
        ] {
            assert_eq!(split_extension(text).1, Some(ext), "{text}");
            assert_eq!(
                call(text, Region::US, NumberFormat::E164).0,
                "+14155552671",
                "{text}"
            );
        }
        assert_eq!(split_extension("4155552671").1, None);
        assert_eq!(split_extension("x123").1, None);
    }

    #[test]
    fn a_number_with_its_own_country_code_keeps_its_national_part_under_any_default_region() {
        // phonenumber 0.3 stripped the default region's trunk prefix (1 for US, 0 for GB and DE) from these,
        // and dialed somebody else: +49 574 833 7887, +86 312 3456 786, +241 6031234.
        for region in [Region::US, Region::GB, Region::DE] {
            for (text, e164) in [
                ("+49 157 4833 7887", "+4915748337887"),
                ("+86 131 2345 6786", "+8613123456786"),
                ("+91 186 0345 1234", "+9118603451234"),
                ("+241 06 03 12 34", "+24106031234"),
                ("+39 02 1234 5678", "+390212345678"),
                ("+44 20 7946 0018", "+442079460018"),
                ("+55 11 2345 6789", "+551123456789"),
                ("+33 1 23 45 67 89", "+33123456789"),
                ("+86 10 1234 5678", "+861012345678"),
                ("+61 1800 123 456", "+611800123456"),
                ("+1 273 201 1234", "+12732011234"),
            ] {
                match normalise(text, region, NumberFormat::E164) {
                    Verdict::Call { e164: got, .. } => assert_eq!(got, e164, "{text} ({region})"),
                    other => panic!("{text} ({region}): {other:?}"),
                }
            }
        }
        // A number's own trunk prefix after its country code is libphonenumber's to drop (+44 0 20 is London).
        assert_eq!(
            call("+44 020 7946 0018", Region::US, NumberFormat::E164).0,
            "+442079460018"
        );
    }

    #[test]
    fn a_region_is_one_the_number_data_has() {
        assert_eq!(region("gb"), Some(Region::GB));
        assert_eq!(region(" US "), Some(Region::US));
        for bad in ["XX", "ZZ", "001", "U", "USA", ""] {
            assert_eq!(region(bad), None, "{bad:?}");
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

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn a_row_over_the_cap_is_read_past_and_the_next_rows_are_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.csv");
        let huge = "x".repeat(MAX_ROW + 10);
        std::fs::write(
            &path,
            format!("name,phone\r\na,\"{huge}\"\r\nb,646-555-1000\r\n\"c\",\"q,\"\"uote\"\r\n"),
        )
        .expect("write");
        let mut r = Records::open(&path, Encoding::Utf8, b',').expect("open");
        let mut rec = ByteRecord::new();
        assert_eq!(r.next(&mut rec).expect("header"), Some(Row::Whole));
        assert_eq!(rec, ByteRecord::from(vec!["name", "phone"]));
        match r.next(&mut rec).expect("big row") {
            Some(Row::TooLong { bytes }) => assert!(bytes >= MAX_ROW as u64, "{bytes}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(&rec[0], b"a");
        assert!(rec.as_slice().len() <= MAX_ROW);
        assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
        assert_eq!(rec, ByteRecord::from(vec!["b", "646-555-1000"]));
        assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
        assert_eq!(rec, ByteRecord::from(vec!["c", "q,\"uote"]));
        assert_eq!(r.next(&mut rec).expect("end"), None);
    }

    #[test]
    fn a_quote_that_is_never_closed_is_caught_before_it_swallows_the_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stray.csv");
        let mut text = String::from("name,phone\nAda,646-555-1000\n\"Ben,646-555-1001\n");
        for i in 0..100 {
            text.push_str(&format!("P{i},646-555-{:04}\n", 2000 + i));
        }
        std::fs::write(&path, text).expect("write");
        let mut r = Records::open(&path, Encoding::Utf8, b',').expect("open");
        let mut rec = ByteRecord::new();
        r.next(&mut rec).expect("header");
        assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
        match r.next(&mut rec).expect("row") {
            Some(Row::Runaway { from, lines }) => {
                assert_eq!(from, 3, "the line of the file the row starts on");
                assert!(lines > MAX_LINES_IN_A_ROW, "{lines}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_row_of_countless_empty_fields_is_capped_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wide.csv");
        std::fs::write(&path, format!("a,b\n{}\n1,2\n", ",".repeat(MAX_FIELDS * 3)))
            .expect("write");
        let mut r = Records::open(&path, Encoding::Utf8, b',').expect("open");
        let mut rec = ByteRecord::new();
        r.next(&mut rec).expect("header");
        assert!(matches!(r.next(&mut rec), Ok(Some(Row::TooLong { .. }))));
        assert!(rec.len() <= MAX_FIELDS + 1);
        assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
        assert_eq!(rec, ByteRecord::from(vec!["1", "2"]));
    }
}
