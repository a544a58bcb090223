//! The journal applies the life cycle: every allowed transition, every refused one, and what a reopen finds
//! after a crash at each step.

use std::path::Path;

use csv::ByteRecord;
use rusqlite::Connection;

use super::*;
use crate::error::Error;
use crate::store::contact::{Answer, Event, Kind, RULES, State};

fn binding(headers: &ByteRecord) -> Binding<'_> {
    Binding {
        digest: "sha256:test",
        input_name: "test.csv",
        headers,
        delimiter: b',',
        reading: "phone-column=phone",
    }
}

fn contacts(n: u64) -> Vec<NewContact> {
    (0..n)
        .map(|i| NewContact {
            row: i,
            line: i + 1,
            record: encode_record(&ByteRecord::from(vec![
                format!("{i}"),
                format!("+1646555{:04}", 1000 + i),
            ])),
            tz: None,
            verdict: crate::contacts::Verdict::Call {
                e164: format!("+1646555{:04}", 1000 + i),
                dial: format!("+1646555{:04}", 1000 + i),
                country: 1,
            },
            note: None,
        })
        .collect()
}

pub(super) fn open_with(dir: &Path, n: u64) -> (JournalOwner, Opened) {
    let headers = ByteRecord::from(vec!["id", "phone"]);
    let b = binding(&headers);
    open(dir, &b, || Ok(contacts(n).into_iter().map(Ok))).expect("journal opens")
}

pub(super) fn state_of(owner: &JournalOwner, row: u64) -> State {
    let conn = open_read_only(&owner.db_path).expect("read");
    let s: String = conn
        .query_row(
            "SELECT state FROM contacts WHERE row = ?1",
            [row as i64],
            |r| r.get(0),
        )
        .expect("row");
    State::parse(&s).expect("state")
}

pub(super) fn example(kind: Kind, row: u64) -> Event {
    let answer = Answer {
        responses: "Q=1".into(),
        attempts: 2,
        notes: "Call succeeded".into(),
    };
    match kind {
        Kind::Defer => Event::Defer {
            detail: Some("later".into()),
            until_ms: Some(1),
        },
        Kind::Suppress => Event::Suppress {
            list: "dnc.txt".into(),
        },
        Kind::Cap => Event::Cap {
            detail: "capped".into(),
        },
        Kind::Unplace => Event::Unplace {
            reason: "no zone".into(),
        },
        Kind::Intent => Event::Intent {
            gateway: "gw".into(),
        },
        Kind::Scheduled => Event::Scheduled {
            req_id: format!("id-{row}"),
        },
        Kind::NotScheduled => Event::NotScheduled {
            detail: "503".into(),
        },
        Kind::GaveUp => Event::GaveUp {
            detail: "refused".into(),
        },
        Kind::Ambiguous => Event::Ambiguous {
            detail: "lost".into(),
        },
        Kind::Interrupted => Event::Interrupted,
        Kind::Forgotten => Event::Forgotten {
            gateway: "http://old-gw:8155".into(),
            action: 1,
        },
        Kind::IdClash => Event::IdClash {
            detail: "clash".into(),
            req_id: None,
        },
        Kind::Made => Event::Made(answer),
        Kind::Failed => Event::Failed(answer),
        Kind::WrittenOff => Event::WrittenOff {
            detail: "late".into(),
            attempts: 3,
        },
        Kind::RecordLost => Event::RecordLost {
            detail: "gone".into(),
        },
        Kind::Redial => Event::Redial { action: 1 },
        Kind::Recall => Event::Recall {
            outcome: State::Failed,
            answer: Answer {
                responses: String::new(),
                attempts: 1,
                notes: "Line Busy".into(),
            },
            due_ms: 5,
            not_before_ms: Some(5),
        },
        Kind::SettleMade => Event::Settle {
            outcome: State::Made,
            detail: None,
        },
        Kind::SettleFailed => Event::Settle {
            outcome: State::Failed,
            detail: None,
        },
        Kind::SettleUnresolved => Event::Settle {
            outcome: State::Unresolved,
            detail: None,
        },
        Kind::Due => Event::Due,
        Kind::Lapse => Event::Lapse {
            detail: "ended".into(),
        },
        Kind::Withdraw => Event::Withdraw {
            detail: "cancelled".into(),
        },
    }
}

/// A path of allowed events from `pending` to `target`, for putting a contact into any state.
pub(super) fn path_to(target: State) -> Vec<Kind> {
    use Kind::*;
    match target {
        State::Pending => vec![],
        State::Intent => vec![Intent],
        State::Dialed => vec![Intent, Scheduled],
        State::Made => vec![Intent, Scheduled, Made],
        State::Failed => vec![Intent, Scheduled, Failed],
        State::Unresolved => vec![Intent, Scheduled, WrittenOff],
        State::Unknown => vec![Intent, Ambiguous],
        State::Error => vec![Intent, GaveUp],
        State::Invalid => vec![Unplace],
        State::Suppressed => vec![Suppress],
        State::Capped => vec![Cap],
        State::TooLate => vec![Lapse],
        State::Withdrawn => vec![Withdraw],
        // Only made by ingest (the row), or by a rolling export's version (a touch not yet due).
        State::Duplicate | State::NotDue => vec![],
    }
}

#[tokio::test]
async fn every_rule_applies_and_every_other_pair_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let starts: Vec<State> = State::ALL
        .into_iter()
        .filter(|s| !matches!(s, State::Duplicate | State::NotDue))
        .collect();
    let pairs: Vec<(State, Kind)> = starts
        .iter()
        .flat_map(|s| Kind::ALL.into_iter().map(move |k| (*s, k)))
        .collect();
    let (owner, _) = open_with(dir.path(), pairs.len() as u64);
    let j = owner.journal.clone();
    for (row, (from, kind)) in pairs.iter().enumerate() {
        let row = row as u64;
        for step in path_to(*from) {
            j.apply(row, example(step, row))
                .await
                .expect("path to the start state");
        }
        assert_eq!(state_of(&owner, row), *from);
        let (allowed, to) = kind.rule();
        // Request ids are unique per row, so no clash is involved here.
        let result = j.apply(row, example(*kind, row)).await;
        if allowed.contains(from) {
            assert_eq!(result, Ok(Applied::Done), "{from:?} --{kind:?}-->");
            assert_eq!(state_of(&owner, row), to, "{from:?} --{kind:?}-->");
        } else {
            match result {
                Err(WriteError::Refused(r)) => {
                    assert_eq!(r.from, *from);
                    assert_eq!(r.line, row + 1);
                }
                other => panic!("{from:?} --{kind:?}--> was not refused: {other:?}"),
            }
            assert_eq!(
                state_of(&owner, row),
                *from,
                "a refused event changed the row"
            );
        }
    }
    // Every rule of the table was exercised from each of its start states, but `not_due`'s: a touch not yet
    // due is made only by a rolling export's version (store::touches, and the engine's reminder tests).
    let exercised = pairs.iter().filter(|(f, k)| k.rule().0.contains(f)).count();
    let from_not_due = RULES
        .iter()
        .filter(|(_, f, _)| f.contains(&State::NotDue))
        .count();
    assert_eq!(from_not_due, 3);
    assert_eq!(
        exercised + from_not_due,
        RULES.iter().map(|(_, f, _)| f.len()).sum::<usize>()
    );
}

#[tokio::test]
async fn a_refused_write_does_not_take_its_group_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, _) = open_with(dir.path(), 2);
    let j = owner.journal.clone();
    // Queued together, so they share one transaction: the refused one must not roll back the other.
    let bad = j.apply(
        0,
        Event::Made(Answer {
            responses: String::new(),
            attempts: 1,
            notes: String::new(),
        }),
    );
    let good = j.apply(
        1,
        Event::Intent {
            gateway: "gw".into(),
        },
    );
    let (bad, good) = tokio::join!(bad, good);
    assert!(matches!(bad, Err(WriteError::Refused(_))));
    assert_eq!(good, Ok(Applied::Done));
    assert_eq!(state_of(&owner, 1), State::Intent);
}

#[tokio::test]
async fn a_request_id_held_by_another_open_contact_makes_both_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, _) = open_with(dir.path(), 3);
    let j = owner.journal.clone();
    for row in 0..3 {
        j.apply(
            row,
            Event::Intent {
                gateway: "gw".into(),
            },
        )
        .await
        .expect("intent");
    }
    j.apply(
        0,
        Event::Scheduled {
            req_id: "42".into(),
        },
    )
    .await
    .expect("first");
    let clash = j
        .apply(
            1,
            Event::Scheduled {
                req_id: "42".into(),
            },
        )
        .await;
    assert_eq!(
        clash,
        Ok(Applied::Clash {
            other_row: 0,
            other_open: true
        })
    );
    assert_eq!(state_of(&owner, 0), State::Unknown);
    assert_eq!(state_of(&owner, 1), State::Unknown);
    // A final contact keeps the result it read before the id came back.
    j.apply(
        2,
        Event::Scheduled {
            req_id: "43".into(),
        },
    )
    .await
    .expect("third");
    j.apply(
        2,
        Event::Made(Answer {
            responses: "Q=1".into(),
            attempts: 1,
            notes: String::new(),
        }),
    )
    .await
    .expect("made");
    j.apply(1, Event::Redial { action: 1 })
        .await
        .expect("redial");
    j.apply(
        1,
        Event::Intent {
            gateway: "gw".into(),
        },
    )
    .await
    .expect("intent");
    let late = j
        .apply(
            1,
            Event::Scheduled {
                req_id: "43".into(),
            },
        )
        .await;
    assert_eq!(
        late,
        Ok(Applied::Clash {
            other_row: 2,
            other_open: false
        })
    );
    assert_eq!(state_of(&owner, 2), State::Made);
    assert_eq!(state_of(&owner, 1), State::Unknown);
}

#[tokio::test]
async fn reopening_after_a_crash_at_each_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = [
        State::Pending,
        State::Intent,
        State::Dialed,
        State::Made,
        State::Unknown,
        State::Suppressed,
    ];
    {
        let (owner, _) = open_with(dir.path(), steps.len() as u64);
        for (row, s) in steps.iter().enumerate() {
            for step in path_to(*s) {
                owner
                    .journal
                    .apply(row as u64, example(step, row as u64))
                    .await
                    .expect("step");
            }
        }
        // The process dies here: nothing else happens before the journal is opened again.
        owner.close().await;
    }
    let (owner, opened) = open_with(dir.path(), steps.len() as u64);
    assert!(!opened.created);
    assert_eq!(opened.interrupted_intents, 1);
    let after: Vec<State> = (0..steps.len() as u64)
        .map(|r| state_of(&owner, r))
        .collect();
    assert_eq!(
        after,
        vec![
            State::Pending, // dialed by the next run
            State::Unknown, // the request may have reached the gateway: never redialed blindly
            State::Dialed,  // polled by the next run
            State::Made,
            State::Unknown,
            State::Suppressed,
        ]
    );
    owner.close().await;
    // An operator's redial is recorded and moves exactly the contacts unknown at that moment: not the one a
    // crash left between intent and answer until a run has reported it.
    let (owner, _) = open_with(dir.path(), steps.len() as u64);
    owner
        .journal
        .apply(
            0,
            Event::Intent {
                gateway: "gw".into(),
            },
        )
        .await
        .expect("intent");
    owner.close().await;
    // (Row 1 is `unknown` after the reopen above; row 0 is `intent` now, as after a crash.)
    let done = redial_unknown(dir.path(), None).expect("redial");
    assert_eq!(done.lines, vec![2, 5]);
    let conn = open_read_only(&dir.path().join(DB_FILE)).expect("read");
    let states: Vec<(String, i64)> = {
        let mut st = conn
            .prepare("SELECT state, attempt FROM contacts ORDER BY row")
            .expect("query");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
    };
    assert_eq!(states[0], ("intent".to_string(), 1));
    assert_eq!(
        states[1],
        ("pending".to_string(), 2),
        "the redial is a second attempt"
    );
    assert_eq!(states[4], ("pending".to_string(), 2));
    let (action, n): (String, i64) = conn
        .query_row("SELECT action, contacts FROM actions", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the action is journaled");
    assert_eq!((action.as_str(), n), ("redial-unknown", 2));
    // Rows that are not unknown are refused by name.
    assert!(matches!(
        redial_unknown(dir.path(), Some(&[4])),
        Err(Error::Usage(_))
    ));
}

#[test]
fn records_round_trip_exactly() {
    let rec = ByteRecord::from(vec![&b"a,b"[..], b"", b"\xe9t\xe9", b"\"q\"\n2"]);
    assert_eq!(decode_record(&encode_record(&rec)), Some(rec));
    assert_eq!(decode_record(&[1, 0, 0, 0]), None);
    assert_eq!(decode_record(&[]), Some(ByteRecord::new()));
}

#[tokio::test]
async fn a_journal_of_the_first_release_is_brought_up_to_date_without_losing_a_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path()).expect("dir");
    {
        // The first release's layout, with one call made and one in flight.
        let conn = Connection::open(dir.path().join(DB_FILE)).expect("db");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE contacts (
                 row INTEGER PRIMARY KEY, line INTEGER NOT NULL, e164 TEXT, dialed_number TEXT,
                 state TEXT NOT NULL, req_id TEXT, responses TEXT, attempts INTEGER, detail TEXT,
                 intent_at INTEGER, dialed_at INTEGER, finished_at INTEGER,
                 removed INTEGER NOT NULL DEFAULT 0, tz TEXT);
             INSERT INTO meta VALUES ('input_digest', 'sha256:test'), ('input_name', 'test.csv'),
                 ('campaign_id', 'abc'), ('created_at', '2026-11-20T00:00:00Z');
             INSERT INTO contacts (row, line, e164, dialed_number, state, req_id, responses, tz)
                 VALUES (0, 1, '+16465551000', '+16465551000', 'made', '11', 'Q=1', 'America/New_York'),
                        (1, 2, '+16465551001', '+16465551001', 'dialed', '12', NULL, NULL);",
        )
        .expect("old journal");
    }
    let (owner, opened) = open_with(dir.path(), 2);
    assert_eq!(opened.migrated_from, Some(1));
    assert!(!opened.created);
    assert_eq!(state_of(&owner, 0), State::Made);
    assert_eq!(state_of(&owner, 1), State::Dialed);
    owner.close().await;
    let conn = open_read_only(&dir.path().join(DB_FILE)).expect("read");
    let (headers, _) = layout(&conn).expect("the header row is stored now");
    assert_eq!(headers, ByteRecord::from(vec!["id", "phone"]));
    let (record, source): (Vec<u8>, Option<String>) = conn
        .query_row(
            "SELECT record, tz_source FROM contacts WHERE row = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(
        decode_record(&record),
        Some(ByteRecord::from(vec!["0", "+16465551000"]))
    );
    assert_eq!(source.as_deref(), Some("column"));
}
