//! A contact's states, with the names the journal stores and the results show.

use std::fmt;

/// A contact's state in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Not yet requested (or a request provably not scheduled); the next call request is allowed.
    Pending,
    /// The intent to call is durable; the call request may be on its way. Never requested again blindly.
    Intent,
    /// The gateway gave a request id; polled until final, by this run or the next.
    Dialed,
    Made,
    Failed,
    /// Read at or after its poll deadline and still not final; the gateway record was removed.
    Unresolved,
    /// A request may have reached the gateway, and nobody knows whether it was scheduled.
    Unknown,
    Error,
    Invalid,
    Duplicate,
    Suppressed,
    Capped,
    /// A reminder touch whose time has not come (an appointment's later touch); not work left.
    NotDue,
    /// A reminder touch that ended (the next touch fell due, or the appointment came within its min-notice)
    /// before it could be made: skipped, never made late.
    TooLate,
    /// A reminder touch no longer wanted: its appointment left the export, was cancelled or moved, or a made
    /// touch's answer stopped the rest.
    Withdrawn,
}

impl State {
    pub const ALL: [State; 15] = [
        State::Pending,
        State::Intent,
        State::Dialed,
        State::Made,
        State::Failed,
        State::Unresolved,
        State::Unknown,
        State::Error,
        State::Invalid,
        State::Duplicate,
        State::Suppressed,
        State::Capped,
        State::NotDue,
        State::TooLate,
        State::Withdrawn,
    ];

    /// Every status a results row can have, in the order reports list them.
    pub const RESULTS: [State; 14] = [
        State::Made,
        State::Failed,
        State::Unresolved,
        State::Unknown,
        State::Error,
        State::Invalid,
        State::Duplicate,
        State::Suppressed,
        State::Capped,
        State::Dialed,
        State::Pending,
        State::NotDue,
        State::TooLate,
        State::Withdrawn,
    ];

    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Intent => "intent",
            State::Dialed => "dialed",
            State::Made => "made",
            State::Failed => "failed",
            State::Unresolved => "unresolved",
            State::Unknown => "unknown",
            State::Error => "error",
            State::Invalid => "invalid",
            State::Duplicate => "duplicate",
            State::Suppressed => "suppressed",
            State::Capped => "capped",
            State::NotDue => "not_due",
            State::TooLate => "too_late",
            State::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// How the results file, the summary and the report show this state.
    pub fn result(self) -> State {
        match self {
            State::Intent => State::Unknown,
            s => s,
        }
    }

    /// The `status` column's word.
    pub fn result_name(self) -> &'static str {
        match self.result() {
            State::Pending => "not_attempted",
            State::Dialed => "in_progress",
            s => s.as_str(),
        }
    }

    /// No event but an operator's moves the contact on.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            State::Pending | State::Intent | State::Dialed | State::NotDue
        )
    }

    /// Final, but a person should look at it.
    pub fn needs_attention(self) -> bool {
        matches!(
            self.result(),
            State::Unresolved | State::Unknown | State::Error
        )
    }

    /// The run left work for a rerun (a call to poll, or a contact to call).
    pub fn is_open(self) -> bool {
        matches!(self.result(), State::Dialed | State::Pending)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
