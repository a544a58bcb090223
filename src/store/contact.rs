//! The life of a contact: its states, the events that move it, and the only transitions allowed.
//!
//! Every change of a contact's state in the whole program is one of the [`Event`]s below, applied by the
//! journal as a compare-and-set against [`RULES`]: `UPDATE … WHERE row = ? AND state IN (<from>)`, exactly one
//! row changed, or the write is refused and the run stops with an internal error naming the row. So this table
//! is the complete answer to "how can a contact end up in state X?".
//!
//! ```text
//!                 ingest ──► invalid | duplicate                                     (final at once)
//!                   │
//!                   ▼
//!   ┌──────────► pending ──Defer──► pending          (outside its window: the reason, and when to look again)
//!   │  Redial      │ ├──Suppress──► suppressed       (an opt-out list names the number)
//!   │ (operator)   │ ├──Cap───────► capped           (the number is at its cap across campaigns)
//!   │              │ └──Unplace───► invalid          (its time zone cannot be known)
//!   │              ▼
//!   │           intent ──NotScheduled──► pending     (provably nothing scheduled: refused, 503, never sent)
//!   │              │ ├──GaveUp──────────► error      (refused request-retries + 1 times)
//!   │              │ ├──Ambiguous───────► unknown    (sent; the answer was lost or unreadable)
//!   │              │ ├──Interrupted─────► unknown    (found on reopen: the process died mid-request)
//!   │              │ └──IdClash─────────► unknown    (the gateway gave an id another contact holds)
//!   │              ▼
//!   │           dialed ──Made / Failed──► made | failed   (the last attempt record is final)
//!   │              │  ├──WrittenOff─────► unresolved      (read at or after its deadline, still not final)
//!   │              │  ├──RecordLost─────► error           (the gateway has no record of the id)
//!   │              │  ├──IdClash────────► unknown
//!   │              │  └──Forgotten──────► unknown         (its gateway is no longer listed: --forget-gateway)
//!   │              └──Recall──► pending   (an outcome the recall policy calls again: the next attempt, due
//!   │                                      after recall-after; its last outcome is kept)
//!   │           pending ──Settle──► made | failed | unresolved   (a recall no longer wanted, or refused by
//!   │                                                             the cap, an opt-out or the row: the last
//!   │                                                             outcome stands)
//!   └───────────── unknown
//! ```
//!
//! Final states never change again, except by an explicit operator action (`ivr-campaign redial-unknown`),
//! which the journal records with its time. A contact is "open" while it is `pending`, `intent` or `dialed`.
//! Every attempt (its intent, request id, result) is also kept in the journal's history of calls.
//!
//! The results file shows each state under its result name ([`State::result_name`]): `pending` is
//! `not_attempted`, `dialed` is `in_progress`, and `intent` (only ever seen while a run is stopped mid-request)
//! is `unknown`, which is what it becomes when the journal is next opened.

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

/// A final answer read from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// IVR responses of the last attempt, `name=value|…`.
    pub responses: String,
    /// Dial attempts the gateway recorded.
    pub attempts: u32,
    /// The gateway's notes of the last attempt.
    pub notes: String,
}

/// Something that happened to one contact. Each moves it along exactly one rule of [`RULES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Not called now (outside its calling window): the reason (kept as it was when `None`), and when to look
    /// again (`None`: not in this run).
    Defer {
        detail: Option<String>,
        until_ms: Option<i64>,
    },
    /// On a suppression list.
    Suppress { list: String },
    /// At the cap of calls per number.
    Cap { detail: String },
    /// Its time zone cannot be known, so no hour is safe.
    Unplace { reason: String },
    /// About to send the call request to this gateway (its key); durable before it is sent.
    Intent { gateway: String },
    /// The gateway answered with a request id.
    Scheduled { req_id: String },
    /// Provably not scheduled (refused before sending, 503, a documented refusal), or never sent.
    NotScheduled { detail: String },
    /// Refused more often than `request-retries` allows.
    GaveUp { detail: String },
    /// Sent, and the answer was lost or could not be read: the call may have been scheduled.
    Ambiguous { detail: String },
    /// Found in `intent` when the journal was opened: the process died mid-request.
    Interrupted,
    /// The gateway gave a request id that another contact of this journal already holds. `req_id`: the id this
    /// contact was given, kept so that no other contact's record is ever removed by it.
    IdClash {
        detail: String,
        req_id: Option<String>,
    },
    /// The last attempt record says `made`.
    Made(Answer),
    /// The last attempt record says `failed`.
    Failed(Answer),
    /// Read at or after its deadline, still not final; the record is removed to cancel further attempts.
    WrittenOff { detail: String, attempts: u32 },
    /// The gateway has no record of the request id.
    RecordLost { detail: String },
    /// Operator action: call an `unknown` contact again, accepting that it may be a second call.
    Redial { action: i64 },
    /// Operator action: the call is open on a gateway the campaign no longer lists (`--forget-gateway`); nobody
    /// will read its outcome, and the person may have been called.
    Forgotten { gateway: String, action: i64 },
    /// The call ended with an outcome the recall policy calls again: the contact may be requested again from
    /// `due_ms` (and is looked at again from `not_before_ms`, if this run is to wait for it).
    Recall {
        outcome: State,
        answer: Answer,
        due_ms: i64,
        not_before_ms: Option<i64>,
    },
    /// A recall is no longer wanted (the policy changed, or the attempts are used up), or a rule refuses it
    /// (the cap, a suppression list, a row that cannot be called any more): the last outcome stands, with why
    /// the recall was not placed added to its detail.
    Settle {
        outcome: State,
        detail: Option<String>,
    },
    /// A reminder touch falls due: it may be called from now until its end.
    Due,
    /// A reminder touch ended before it could be made (the next touch fell due, or the appointment came
    /// within its min-notice): why.
    Lapse { detail: String },
    /// A reminder touch is no longer wanted (its appointment left the export or was cancelled, moved, or
    /// confirmed): why.
    Withdraw { detail: String },
}

impl Event {
    /// What a rule's refusal does to a contact. For one waiting for a recall (`last_outcome`: its last call's
    /// outcome), the refusal is of the recall only: that call's outcome stands, with the reason the recall
    /// was not placed, because a call that was made (or failed) must never be hidden behind `capped`,
    /// `suppressed` or `invalid`. Any other contact takes the refusal as it is.
    pub fn refusing(self, last_outcome: Option<State>) -> Event {
        let Some(outcome) = last_outcome else {
            return self;
        };
        let why = match &self {
            Event::Cap { detail } => format!("recall not placed, capped: {detail}"),
            Event::Suppress { list } => format!("recall not placed: on suppression list {list}"),
            Event::Unplace { reason } => format!("recall not placed: {reason}"),
            Event::Lapse { detail } | Event::Withdraw { detail } => {
                format!("recall not placed: {detail}")
            }
            _ => return self,
        };
        Event::Settle {
            outcome,
            detail: Some(why),
        }
    }
}

/// An event without its data: what [`RULES`] is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Defer,
    Suppress,
    Cap,
    Unplace,
    Intent,
    Scheduled,
    NotScheduled,
    GaveUp,
    Ambiguous,
    Interrupted,
    IdClash,
    Made,
    Failed,
    WrittenOff,
    RecordLost,
    Redial,
    Forgotten,
    Recall,
    SettleMade,
    SettleFailed,
    SettleUnresolved,
    Due,
    Lapse,
    Withdraw,
}

use State as S;

/// The only transitions there are: an event of this kind moves a contact from one of these states to that one.
pub const RULES: &[(Kind, &[State], State)] = &[
    (Kind::Defer, &[S::Pending], S::Pending),
    (Kind::Recall, &[S::Dialed], S::Pending),
    (Kind::SettleMade, &[S::Pending], S::Made),
    (Kind::SettleFailed, &[S::Pending], S::Failed),
    (Kind::SettleUnresolved, &[S::Pending], S::Unresolved),
    (Kind::Suppress, &[S::Pending], S::Suppressed),
    (Kind::Cap, &[S::Pending], S::Capped),
    (Kind::Unplace, &[S::Pending], S::Invalid),
    (Kind::Intent, &[S::Pending], S::Intent),
    (Kind::Scheduled, &[S::Intent], S::Dialed),
    (Kind::NotScheduled, &[S::Intent], S::Pending),
    (Kind::GaveUp, &[S::Intent], S::Error),
    (Kind::Ambiguous, &[S::Intent], S::Unknown),
    (Kind::Interrupted, &[S::Intent], S::Unknown),
    (Kind::IdClash, &[S::Intent, S::Dialed], S::Unknown),
    (Kind::Made, &[S::Dialed], S::Made),
    (Kind::Failed, &[S::Dialed], S::Failed),
    (Kind::WrittenOff, &[S::Dialed], S::Unresolved),
    (Kind::RecordLost, &[S::Dialed], S::Error),
    (Kind::Redial, &[S::Unknown], S::Pending),
    (Kind::Forgotten, &[S::Dialed], S::Unknown),
    // Reminder touches: created `not_due` (or `pending` when due at once); a touch never leaves `pending` for
    // `not_due`, so once due it is made at most once, and one past its end is skipped, not made late.
    (Kind::Due, &[S::NotDue], S::Pending),
    (Kind::Lapse, &[S::NotDue, S::Pending], S::TooLate),
    (Kind::Withdraw, &[S::NotDue, S::Pending], S::Withdrawn),
];

impl Kind {
    pub const ALL: [Kind; 24] = [
        Kind::Defer,
        Kind::Suppress,
        Kind::Cap,
        Kind::Unplace,
        Kind::Intent,
        Kind::Scheduled,
        Kind::NotScheduled,
        Kind::GaveUp,
        Kind::Ambiguous,
        Kind::Interrupted,
        Kind::IdClash,
        Kind::Made,
        Kind::Failed,
        Kind::WrittenOff,
        Kind::RecordLost,
        Kind::Redial,
        Kind::Forgotten,
        Kind::Recall,
        Kind::SettleMade,
        Kind::SettleFailed,
        Kind::SettleUnresolved,
        Kind::Due,
        Kind::Lapse,
        Kind::Withdraw,
    ];

    /// The states this kind of event may start from, and the state it leads to.
    pub fn rule(self) -> (&'static [State], State) {
        RULES
            .iter()
            .find(|(k, _, _)| *k == self)
            .map(|(_, from, to)| (*from, *to))
            // Every kind has a rule: `every_kind_has_exactly_one_rule` checks it.
            .unwrap_or((&[], State::Pending))
    }

    /// `state IN ('a', 'b')`: the compare half of the journal's compare-and-set.
    pub fn from_sql(self) -> String {
        let from: Vec<String> = self
            .rule()
            .0
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("state IN ({})", from.join(", "))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Defer => "defer",
            Kind::Suppress => "suppress",
            Kind::Cap => "cap",
            Kind::Unplace => "unplace",
            Kind::Intent => "intent",
            Kind::Scheduled => "scheduled",
            Kind::NotScheduled => "not-scheduled",
            Kind::GaveUp => "gave-up",
            Kind::Ambiguous => "ambiguous",
            Kind::Interrupted => "interrupted",
            Kind::IdClash => "id-clash",
            Kind::Made => "made",
            Kind::Failed => "failed",
            Kind::WrittenOff => "written-off",
            Kind::RecordLost => "record-lost",
            Kind::Redial => "redial",
            Kind::Forgotten => "forgotten",
            Kind::Recall => "recall",
            Kind::SettleMade => "settle-made",
            Kind::SettleFailed => "settle-failed",
            Kind::SettleUnresolved => "settle-unresolved",
            Kind::Due => "due",
            Kind::Lapse => "lapse",
            Kind::Withdraw => "withdraw",
        }
    }
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self {
            Event::Defer { .. } => Kind::Defer,
            Event::Suppress { .. } => Kind::Suppress,
            Event::Cap { .. } => Kind::Cap,
            Event::Unplace { .. } => Kind::Unplace,
            Event::Intent { .. } => Kind::Intent,
            Event::Scheduled { .. } => Kind::Scheduled,
            Event::NotScheduled { .. } => Kind::NotScheduled,
            Event::GaveUp { .. } => Kind::GaveUp,
            Event::Ambiguous { .. } => Kind::Ambiguous,
            Event::Interrupted => Kind::Interrupted,
            Event::IdClash { .. } => Kind::IdClash,
            Event::Made(_) => Kind::Made,
            Event::Failed(_) => Kind::Failed,
            Event::WrittenOff { .. } => Kind::WrittenOff,
            Event::RecordLost { .. } => Kind::RecordLost,
            Event::Redial { .. } => Kind::Redial,
            Event::Forgotten { .. } => Kind::Forgotten,
            Event::Recall { .. } => Kind::Recall,
            Event::Due => Kind::Due,
            Event::Lapse { .. } => Kind::Lapse,
            Event::Withdraw { .. } => Kind::Withdraw,
            Event::Settle { outcome, .. } => match outcome {
                State::Made => Kind::SettleMade,
                State::Failed => Kind::SettleFailed,
                _ => Kind::SettleUnresolved,
            },
        }
    }
}

/// A transition the rules do not allow: a bug, reported with the row and stopping the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {line}: a contact in state {from} cannot take the event {kind}")]
pub struct Refused {
    pub line: u64,
    pub from: State,
    pub kind: &'static str,
}

/// The state `event` leads to from `from`, or why it cannot.
pub fn transition(from: State, event: Kind) -> Result<State, (State, Kind)> {
    let (allowed, to) = event.rule();
    if allowed.contains(&from) {
        Ok(to)
    } else {
        Err((from, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_rule() {
        for k in Kind::ALL {
            let n = RULES.iter().filter(|(r, _, _)| *r == k).count();
            assert_eq!(n, 1, "{k:?} has {n} rules");
            assert!(!k.rule().0.is_empty(), "{k:?} starts from nowhere");
        }
        assert_eq!(RULES.len(), Kind::ALL.len());
    }

    #[test]
    fn a_recall_only_follows_a_call_and_keeps_one_call_open_at_a_time() {
        // The only way back to `pending` after a request is a final answer the policy recalls (or a request
        // provably not scheduled, or the operator's redial): never from `intent`'s uncertainty.
        for (kind, from, to) in RULES {
            if *to == State::Pending && from.contains(&State::Dialed) {
                assert_eq!(*kind, Kind::Recall);
            }
        }
        assert_eq!(transition(State::Dialed, Kind::Recall), Ok(State::Pending));
        assert!(transition(State::Intent, Kind::Recall).is_err());
        assert!(transition(State::Made, Kind::Recall).is_err());
    }

    #[test]
    fn final_states_are_left_only_by_the_operators_redial() {
        for (kind, from, _) in RULES {
            for f in *from {
                if f.is_final() {
                    assert_eq!(*kind, Kind::Redial, "{kind:?} leaves final state {f:?}");
                    assert_eq!(*f, State::Unknown);
                }
            }
        }
    }

    #[test]
    fn only_an_intent_can_become_a_request_and_nothing_skips_it() {
        // The only way into `dialed` is from `intent`, and the only way into `intent` is from `pending`: a
        // request id is never recorded for a contact whose intent was not durable first.
        for (kind, from, to) in RULES {
            if *to == State::Dialed {
                assert_eq!((*kind, *from), (Kind::Scheduled, &[State::Intent][..]));
            }
            if *to == State::Intent {
                assert_eq!((*kind, *from), (Kind::Intent, &[State::Pending][..]));
            }
        }
    }

    #[test]
    fn the_table_as_a_function() {
        // Every (state, kind) pair: allowed exactly where the table says, refused everywhere else.
        let mut allowed = 0;
        for from in State::ALL {
            for kind in Kind::ALL {
                let (ok_from, to) = kind.rule();
                match transition(from, kind) {
                    Ok(t) => {
                        assert!(ok_from.contains(&from));
                        assert_eq!(t, to);
                        allowed += 1;
                    }
                    Err(e) => {
                        assert!(!ok_from.contains(&from));
                        assert_eq!(e, (from, kind));
                    }
                }
            }
        }
        assert_eq!(
            allowed,
            RULES.iter().map(|(_, f, _)| f.len()).sum::<usize>()
        );
    }

    #[test]
    fn result_names() {
        assert_eq!(State::Pending.result_name(), "not_attempted");
        assert_eq!(State::Dialed.result_name(), "in_progress");
        assert_eq!(State::Intent.result_name(), "unknown");
        assert_eq!(State::Made.result_name(), "made");
        let names: Vec<&str> = State::RESULTS.iter().map(|s| s.result_name()).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for s in State::ALL {
            assert!(State::RESULTS.contains(&s.result()), "{s:?}");
        }
    }

    #[test]
    fn a_refused_recall_keeps_the_last_outcome() {
        let cap = || Event::Cap {
            detail: "1 call(s)".into(),
        };
        assert_eq!(cap().refusing(None), cap());
        for refusal in [
            cap(),
            Event::Suppress { list: "dnc".into() },
            Event::Unplace {
                reason: "no zone".into(),
            },
        ] {
            let settled = refusal.refusing(Some(State::Made));
            assert_eq!(settled.kind(), Kind::SettleMade, "{settled:?}");
            assert!(
                matches!(&settled, Event::Settle { detail: Some(d), .. } if d.starts_with("recall not placed")),
                "{settled:?}"
            );
        }
    }

    #[test]
    fn sql_of_the_compare() {
        assert_eq!(Kind::IdClash.from_sql(), "state IN ('intent', 'dialed')");
    }
}
