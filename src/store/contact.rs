//! The life of a contact: its states, the events that move it, the only transitions allowed, and what each
//! event writes.
//!
//! Every change of a contact's state in the whole program is one of the [`Event`]s below: its rule
//! ([`Kind::rule`]) and its effects ([`effects`]), applied by the journal as one compare-and-set:
//! `UPDATE … SET <effects> WHERE row = ? AND state IN (<from>)`, exactly one row changed, or the write is
//! refused and the run stops with an internal error naming the row. Crash recovery and the operator's actions
//! take the same path. So this file is the complete answer to "how can a contact end up in state X?".
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
//!
//!   reminder touches (a rolling export):  not_due ──Due──► pending
//!                                 not_due | pending ──Lapse──► too_late   (its end passed before a call)
//!                                 not_due | pending ──Withdraw──► withdrawn (cancelled, moved, gone, confirmed)
//! ```
//!
//! Final states never change again, except by an explicit operator action (`ivr-campaign redial-unknown`),
//! which the journal records with its time. A contact is "open" while it is `pending`, `intent` or `dialed`.
//! Every attempt (its intent, request id, result) is also kept in the journal's history of calls.
//!
//! The results file shows each state under its result name ([`State::result_name`]): `pending` is
//! `not_attempted`, `dialed` is `in_progress`, and `intent` (only ever seen while a run is stopped mid-request)
//! is `unknown`, which is what it becomes when the journal is next opened.

mod state;

pub use state::State;

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

/// The only transitions there are, as a table: an event of this kind moves a contact from one of these states
/// to that one. Read from [`Kind::rule`], which is the table's source.
pub const RULES: &[(Kind, &[State], State)] = &TABLE;

const TABLE: [(Kind, &[State], State); Kind::ALL.len()] = {
    let mut out = [(Kind::Defer, &[] as &[State], State::Pending); Kind::ALL.len()];
    let mut i = 0;
    while i < Kind::ALL.len() {
        let (from, to) = Kind::ALL[i].rule();
        out[i] = (Kind::ALL[i], from, to);
        i += 1;
    }
    out
};

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

    /// The states this kind of event may start from, and the state it leads to: the life cycle's table. A
    /// match with no fallback, so a new kind of event cannot compile without its rule.
    pub const fn rule(self) -> (&'static [State], State) {
        match self {
            Kind::Defer => (&[S::Pending], S::Pending),
            Kind::Recall => (&[S::Dialed], S::Pending),
            Kind::SettleMade => (&[S::Pending], S::Made),
            Kind::SettleFailed => (&[S::Pending], S::Failed),
            Kind::SettleUnresolved => (&[S::Pending], S::Unresolved),
            Kind::Suppress => (&[S::Pending], S::Suppressed),
            Kind::Cap => (&[S::Pending], S::Capped),
            Kind::Unplace => (&[S::Pending], S::Invalid),
            Kind::Intent => (&[S::Pending], S::Intent),
            Kind::Scheduled => (&[S::Intent], S::Dialed),
            Kind::NotScheduled => (&[S::Intent], S::Pending),
            Kind::GaveUp => (&[S::Intent], S::Error),
            Kind::Ambiguous => (&[S::Intent], S::Unknown),
            Kind::Interrupted => (&[S::Intent], S::Unknown),
            Kind::IdClash => (&[S::Intent, S::Dialed], S::Unknown),
            Kind::Made => (&[S::Dialed], S::Made),
            Kind::Failed => (&[S::Dialed], S::Failed),
            Kind::WrittenOff => (&[S::Dialed], S::Unresolved),
            Kind::RecordLost => (&[S::Dialed], S::Error),
            Kind::Redial => (&[S::Unknown], S::Pending),
            Kind::Forgotten => (&[S::Dialed], S::Unknown),
            // Reminder touches: made `not_due` by a rolling export's version; once due, a touch never goes
            // back to `not_due`, so it is made at most once, and one past its end is skipped, never late.
            Kind::Due => (&[S::NotDue], S::Pending),
            Kind::Lapse => (&[S::NotDue, S::Pending], S::TooLate),
            Kind::Withdraw => (&[S::NotDue, S::Pending], S::Withdrawn),
        }
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

/// A column's new value, as an event writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// One more than the column holds.
    Increment,
    /// Text added to what the column holds (after `; `), or the text alone in an empty column.
    Append(String),
}

/// What an event writes to its contact: each column and its new value, `state` (the rule's target) first.
/// With [`Kind::rule`] this is the whole of a transition; the journal applies the two together, as one
/// compare-and-set.
pub fn effects(event: &Event, at_ms: i64) -> Vec<(&'static str, Value)> {
    use Value as V;
    let text = |s: &str| V::Text(s.to_string());
    let at = V::Int(at_ms);
    let opt = |v: Option<i64>| v.map_or(V::Null, V::Int);
    let mut cols: Vec<(&'static str, Value)> =
        vec![("state", text(event.kind().rule().1.as_str()))];
    match event {
        Event::Defer { detail, until_ms } => {
            if let Some(detail) = detail {
                cols.push(("detail", text(detail)));
            }
            cols.push(("not_before", opt(*until_ms)));
        }
        Event::Suppress { list } => {
            cols.push(("detail", text(&format!("on suppression list {list}"))));
            cols.push(("finished_at", at));
        }
        Event::Cap { detail } | Event::Unplace { reason: detail } => {
            cols.push(("detail", text(detail)));
            cols.push(("finished_at", at));
        }
        Event::Intent { gateway } => {
            cols.push(("gateway", text(gateway)));
            cols.push(("intent_at", at));
            cols.push(("not_before", V::Null));
            cols.push(("req_id", V::Null));
            // The new attempt has no record on the gateway yet (the last one's removal is behind us).
            cols.push(("removed", V::Int(0)));
            cols.push(("dialed_at", V::Null));
            // What the last call said (a recall's `last_outcome`, `recall_at`, responses) stays until this
            // attempt is placed: a request that provably never left puts the contact back to waiting for its
            // recall, still shown with the outcome of the call that reached them.
        }
        Event::Scheduled { req_id } => {
            cols.push(("req_id", text(req_id)));
            cols.push(("dialed_at", at));
            cols.push(("detail", V::Null));
            // A new call: what the last one said is in the history of calls now.
            for c in [
                "recall_at",
                "last_outcome",
                "finished_at",
                "responses",
                "attempts",
            ] {
                cols.push((c, V::Null));
            }
        }
        Event::NotScheduled { detail } => cols.push(("detail", text(detail))),
        Event::GaveUp { detail } | Event::Ambiguous { detail } | Event::RecordLost { detail } => {
            cols.push(("detail", text(detail)));
            cols.push(("finished_at", at));
        }
        Event::IdClash { detail, req_id } => {
            cols.push(("detail", text(detail)));
            cols.push(("finished_at", at));
            if let Some(id) = req_id {
                cols.push(("req_id", text(id)));
            }
        }
        Event::Interrupted => {
            cols.push((
                "detail",
                text(
                    "the run stopped after deciding to call and before the gateway answered; the call may have been scheduled, so it is not redialed",
                ),
            ));
            cols.push(("finished_at", at));
        }
        Event::Made(a) | Event::Failed(a) => {
            cols.push(("responses", text(&a.responses)));
            cols.push(("attempts", V::Int(i64::from(a.attempts))));
            cols.push(("detail", text(&a.notes)));
            cols.push(("finished_at", at));
        }
        Event::WrittenOff { detail, attempts } => {
            cols.push(("detail", text(detail)));
            cols.push(("attempts", V::Int(i64::from(*attempts))));
            cols.push(("finished_at", at));
        }
        Event::Forgotten { gateway, action } => {
            cols.push((
                "detail",
                text(&format!(
                    "its call was open on gateway {gateway}, which the campaign no longer lists; written off by operator action {action} (--forget-gateway). The person may have been called: check that gateway before calling again"
                )),
            ));
            cols.push(("finished_at", at));
        }
        Event::Redial { action } => {
            cols.push((
                "detail",
                text(&format!(
                    "to be called again: operator action {action} (ivr-campaign redial-unknown)"
                )),
            ));
            cols.push(("finished_at", V::Null));
            cols.push(("req_id", V::Null));
            // The new attempt has no record on the gateway yet (the last one's removal is behind us).
            cols.push(("removed", V::Int(0)));
            cols.push(("dialed_at", V::Null));
            // Another call to the same person: the cap ledger counts it as one more.
            cols.push(("attempt", V::Increment));
        }
        Event::Recall {
            outcome,
            answer,
            due_ms,
            not_before_ms,
        } => {
            cols.push(("last_outcome", text(outcome.as_str())));
            cols.push(("responses", text(&answer.responses)));
            cols.push(("attempts", V::Int(i64::from(answer.attempts))));
            cols.push(("detail", text(&answer.notes)));
            cols.push(("finished_at", at));
            cols.push(("recall_at", V::Int(*due_ms)));
            cols.push(("not_before", opt(*not_before_ms)));
            // Another call to the same person: the cap ledger counts it as one more.
            cols.push(("attempt", V::Increment));
        }
        Event::Due => cols.push(("not_before", V::Null)),
        Event::Lapse { detail } | Event::Withdraw { detail } => {
            cols.push(("detail", text(detail)));
            cols.push(("finished_at", at));
        }
        Event::Settle { detail, .. } => {
            cols.push(("recall_at", V::Null));
            cols.push(("not_before", V::Null));
            if let Some(why) = detail {
                // The last call's own detail (its notes) stays: why its recall was not placed follows it.
                cols.push(("detail", V::Append(why.clone())));
            }
        }
    }
    cols
}

/// The outcome an event gives the attempt it ends, for the contact's history of calls (`None`: it ends no
/// attempt).
pub fn ends_attempt(event: &Event) -> Option<State> {
    match event {
        Event::Made(_) => Some(State::Made),
        Event::Failed(_) => Some(State::Failed),
        Event::WrittenOff { .. } => Some(State::Unresolved),
        Event::RecordLost { .. } | Event::GaveUp { .. } => Some(State::Error),
        Event::Ambiguous { .. }
        | Event::IdClash { .. }
        | Event::Interrupted
        | Event::Forgotten { .. } => Some(State::Unknown),
        Event::Recall { outcome, .. } => Some(*outcome),
        Event::Defer { .. }
        | Event::Suppress { .. }
        | Event::Cap { .. }
        | Event::Unplace { .. }
        | Event::Intent { .. }
        | Event::Scheduled { .. }
        | Event::NotScheduled { .. }
        | Event::Redial { .. }
        | Event::Settle { .. }
        | Event::Due
        | Event::Lapse { .. }
        | Event::Withdraw { .. } => None,
    }
}

#[cfg(test)]
mod tests;
