//! The operator's actions and crash recovery obey the life-cycle table: from contacts in every state, each
//! moves exactly those its event's rule starts from, records what it did, and a transition the table forbids
//! is refused and counted, never written.

use super::apply::apply_many;
use super::open::open_connection;
use super::tests::{example, open_with, path_to, state_of};
use super::*;
use crate::store::contact::{Event, Kind, State};

/// Every state a contact can be put in (a duplicate is only ever made by ingest, a touch not yet due by a
/// rolling export's version: store::touches tests those).
fn every_state() -> Vec<State> {
    State::ALL
        .into_iter()
        .filter(|s| !matches!(s, State::Duplicate | State::NotDue))
        .collect()
}

/// Puts contact `row` of an open journal into `state`.
/// A journal in `dir` with one contact in each state, row by row as [`every_state`] lists them; left open.
async fn journal_in_every_state(dir: &std::path::Path) -> (JournalOwner, Vec<State>) {
    let before = every_state();
    let (owner, _) = open_with(dir, before.len() as u64);
    for (row, s) in before.iter().enumerate() {
        put(&owner, row as u64, *s).await;
    }
    (owner, before)
}

async fn put(owner: &JournalOwner, row: u64, state: State) {
    for step in path_to(state) {
        owner
            .journal
            .apply(row, example(step, row))
            .await
            .expect("path to the state");
    }
}

fn states(dir: &Path, n: u64) -> Vec<State> {
    let conn = open_read_only(&dir.join(DB_FILE)).expect("read");
    (0..n)
        .map(|row| {
            let s: String = conn
                .query_row(
                    "SELECT state FROM contacts WHERE row = ?1",
                    [row as i64],
                    |r| r.get(0),
                )
                .expect("row");
            State::parse(&s).expect("state")
        })
        .collect()
}

fn history(dir: &Path) -> Vec<(i64, String)> {
    let conn = open_read_only(&dir.join(DB_FILE)).expect("read");
    let mut st = conn
        .prepare("SELECT row, outcome FROM calls ORDER BY row, attempt")
        .expect("query");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

/// What the table says an event of `kind` does to a contact in each of `before`.
fn by_the_table(kind: Kind, before: &[State]) -> Vec<State> {
    before
        .iter()
        .map(|s| crate::store::contact::transition(*s, kind).unwrap_or(*s))
        .collect()
}

#[tokio::test]
async fn forgetting_a_gateway_moves_only_the_calls_the_table_lets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, before) = journal_in_every_state(dir.path()).await;
    let n = before.len() as u64;
    // Every contact that was ever requested was requested of gateway `gw` (see `example`).
    let forgotten = owner
        .journal
        .forget_gateway("gw".into())
        .await
        .expect("forget");
    assert_eq!(forgotten, 1, "only the call open on it: the dialed one");
    owner.close().await;
    assert_eq!(
        states(dir.path(), n),
        by_the_table(Kind::Forgotten, &before)
    );
    let dialed = before
        .iter()
        .position(|s| *s == State::Dialed)
        .expect("dialed") as i64;
    assert!(
        history(dir.path()).contains(&(dialed, "unknown".to_string())),
        "the forgotten call ends in the history"
    );
    let conn = open_read_only(&dir.path().join(DB_FILE)).expect("read");
    let (action, contacts): (String, i64) = conn
        .query_row("SELECT action, contacts FROM actions", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the action is recorded");
    assert_eq!((action.as_str(), contacts), ("forget-gateway", 1));
}

#[tokio::test]
async fn redial_unknown_moves_only_the_contacts_the_table_lets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, before) = journal_in_every_state(dir.path()).await;
    let n = before.len() as u64;
    owner.close().await;
    let done = redial_unknown(dir.path(), None).expect("redial");
    assert_eq!(done.lines.len(), 1);
    assert_eq!(states(dir.path(), n), by_the_table(Kind::Redial, &before));
    // Asking for a row the table does not let a redial move is refused by name, and writes nothing.
    let made = before.iter().position(|s| *s == State::Made).expect("made") as u64 + 1;
    assert!(matches!(
        redial_unknown(dir.path(), Some(&[made])),
        Err(Error::Usage(_))
    ));
    assert_eq!(states(dir.path(), n), by_the_table(Kind::Redial, &before));
}

#[tokio::test]
async fn crash_recovery_moves_only_the_requests_the_table_lets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, before) = journal_in_every_state(dir.path()).await;
    let n = before.len() as u64;
    owner.close().await;
    let calls_before = history(dir.path()).len();
    let (owner, opened) = open_with(dir.path(), n);
    assert_eq!(opened.interrupted_intents, 1);
    let after: Vec<State> = (0..n).map(|r| state_of(&owner, r)).collect();
    owner.close().await;
    assert_eq!(after, by_the_table(Kind::Interrupted, &before));
    let intent = before
        .iter()
        .position(|s| *s == State::Intent)
        .expect("intent") as i64;
    let calls = history(dir.path());
    assert_eq!(
        calls.len(),
        calls_before + 1,
        "one attempt ended: {calls:?}"
    );
    assert!(calls.contains(&(intent, "unknown".to_string())));
}

#[tokio::test]
async fn a_transition_the_table_forbids_is_refused_and_counted_not_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, before) = journal_in_every_state(dir.path()).await;
    let n = before.len() as u64;
    owner.close().await;
    let rows: Vec<u64> = (0..n).collect();
    // The events of the operator's actions and of crash recovery, offered to a contact in every state.
    let events: [(Kind, Event); 3] = [
        (Kind::Redial, Event::Redial { action: 9 }),
        (
            Kind::Forgotten,
            Event::Forgotten {
                gateway: "gw".into(),
                action: 9,
            },
        ),
        (Kind::Interrupted, Event::Interrupted),
    ];
    for (kind, event) in events {
        let mut conn = open_connection(&dir.path().join(DB_FILE)).expect("open");
        let tx = conn.transaction().expect("tx");
        let done = apply_many(&tx, &rows, 1, |_| event.clone()).expect("applied");
        let (allowed, _) = kind.rule();
        let moved: Vec<State> = done.applied.iter().map(|r| before[*r as usize]).collect();
        assert!(
            moved.iter().all(|s| allowed.contains(s)),
            "{kind:?} moved {moved:?}"
        );
        assert_eq!(done.applied.len() + done.refused.len(), rows.len());
        for r in &done.refused {
            assert!(!allowed.contains(&r.from), "{kind:?} refused {r}");
            assert_eq!(r.from, before[(r.line - 1) as usize]);
        }
        let expected = by_the_table(kind, &before);
        let now: Vec<State> = rows
            .iter()
            .map(|row| {
                let s: String = tx
                    .query_row(
                        "SELECT state FROM contacts WHERE row = ?1",
                        [*row as i64],
                        |r| r.get(0),
                    )
                    .expect("row");
                State::parse(&s).expect("state")
            })
            .collect();
        assert_eq!(now, expected, "{kind:?}: a refused row was written");
        // Rolled back: each event is tried on the same journal.
        drop(tx);
    }
}
