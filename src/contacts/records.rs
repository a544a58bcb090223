//! The rows of a contact list, read as text with caps on a row's size, fields and physical lines.

use std::io::{BufRead, BufReader};
use std::path::Path;

use csv::ByteRecord;

use super::*;
use crate::error::Result;

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
    pub(super) core: csv_core::Reader,
    pub(super) input: Box<dyn BufRead + Send>,
    pub(super) out: Vec<u8>,
    pub(super) ends: Vec<usize>,
    pub(super) scratch: Vec<u8>,
    /// The list's width, phone column and delimiter, once its header is read: to tell a multi-line cell from
    /// a stray quote that swallowed rows.
    pub(super) shape: Option<(usize, usize, u8)>,
    pub(super) scratch_ends: Vec<usize>,
}

impl Records {
    pub(super) fn open(path: &Path, encoding: Encoding, delimiter: u8) -> Result<Records> {
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
