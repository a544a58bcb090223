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
}

impl State {
    pub const ALL: [State; 12] = [
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
    ];

    /// Every status a results row can have, in the order reports list them.
    pub const RESULTS: [State; 11] = [
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
        !matches!(self, State::Pending | State::Intent | State::Dialed)
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
