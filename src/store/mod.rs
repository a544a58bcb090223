//! Where a contact's state lives and changes: the life cycle ([`contact`]) and the journal that applies it
//! ([`journal`]).

pub mod compat;
pub mod contact;
pub mod heard;
pub mod journal;
pub mod touches;

pub use contact::{Answer, Event, Kind, State};
pub use journal::{Applied, ContactRow, Journal, JournalOwner, Op, WriteError};
