//! Reading the contact list: encoding, delimiter, header, the phone column, and a verdict for every row.
//!
//! Lists come out of Excel and practice-management exports: UTF-8 with or without a BOM, or Windows-1252;
//! commas, semicolons (Excel in much of Europe) or tabs. [`inspect`] settles all of that once, in one pass
//! over the file that also computes the digest binding the journal to it. Rows are then read as text and
//! written back to the results unchanged; only the phone (and time zone) cells are interpreted. A row that
//! cannot be called is data (an `invalid` result with its reason), never an abort.
//!
//! - `source`: settling the file once: encoding, delimiter, header, the phone column, the digest.
//! - `records`: the rows, read as text with caps on their size, written back to the results unchanged.
//! - `phone`: a verdict for every number, by libphonenumber.
//! - `admission`: whether a row enters the life cycle callable, or `invalid` or `duplicate` at once.

mod admission;
mod phone;
mod records;
mod source;

pub use admission::{Admission, admit};
pub use phone::*;
pub use records::*;
pub use rlibphonenumber::Region;
pub use source::*;

#[cfg(test)]
mod record_tests;
#[cfg(test)]
mod tests;
