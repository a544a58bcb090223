//! Views of the journal for people and programs: the results CSV, the HTML report, the summary, `status`,
//! and progress on the terminal. None of them changes a contact's state.

pub mod metrics;
pub mod progress;
pub mod reminders;
pub mod report;
pub mod results;
pub mod status;
pub mod summary;
pub mod tally;
