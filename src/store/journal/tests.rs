//! The journal applies the life cycle: every allowed transition, every refused one, and what a reopen finds
//! after a crash at each step.

use super::*;
use crate::store::contact::{Answer, Kind, RULES};

fn binding(headers: &ByteRecord) -> Binding<'_> {
    Binding {
        digest: "sha256:test",
        input_name: "test.csv",
        headers,
        delimiter: b',',
        redial_unknown: false,
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
            },
            note: None,
        })
        .collect()
}

fn open_with(dir: &Path, n: u64, redial: bool) -> (JournalOwner, Opened) {
    let headers = ByteRecord::from(vec!["id", "phone"]);
    let mut b = binding(&headers);
    b.redial_unknown = redial;
    open(dir, &b, || Ok(contacts(n).into_iter().map(Ok))).expect("journal opens")
}

fn state_of(owner: &JournalOwner, row: u64) -> State {
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

fn example(kind: Kind, row: u64) -> Event {
    let answer = Answer {
        responses: "Q=1".into(),
        attempts: 2,
        notes: "Call succeeded".into(),
    };
    match kind {
        Kind::Defer => Event::Defer {
            detail: "later".into(),
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
        Kind::Intent => Event::Intent,
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
        Kind::IdClash => Event::IdClash {
            detail: "clash".into(),
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
    }
}

/// A path of allowed events from `pending` to `target`, for putting a contact into any state.
fn path_to(target: State) -> Vec<Kind> {
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
        State::Duplicate => vec![],
    }
}

#[tokio::test]
async fn every_rule_applies_and_every_other_pair_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let starts: Vec<State> = State::ALL
        .into_iter()
        .filter(|s| *s != State::Duplicate)
        .collect();
    let pairs: Vec<(State, Kind)> = starts
        .iter()
        .flat_map(|s| Kind::ALL.into_iter().map(move |k| (*s, k)))
        .collect();
    let (owner, _) = open_with(dir.path(), pairs.len() as u64, false);
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
    // Every rule of the table was exercised from each of its start states.
    let exercised = pairs.iter().filter(|(f, k)| k.rule().0.contains(f)).count();
    assert_eq!(
        exercised,
        RULES.iter().map(|(_, f, _)| f.len()).sum::<usize>()
    );
}

#[tokio::test]
async fn a_refused_write_does_not_take_its_group_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, _) = open_with(dir.path(), 2, false);
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
    let good = j.apply(1, Event::Intent);
    let (bad, good) = tokio::join!(bad, good);
    assert!(matches!(bad, Err(WriteError::Refused(_))));
    assert_eq!(good, Ok(Applied::Done));
    assert_eq!(state_of(&owner, 1), State::Intent);
}

#[tokio::test]
async fn a_request_id_held_by_another_open_contact_makes_both_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (owner, _) = open_with(dir.path(), 3, false);
    let j = owner.journal.clone();
    for row in 0..3 {
        j.apply(row, Event::Intent).await.expect("intent");
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
    j.apply(1, Event::Intent).await.expect("intent");
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
        let (owner, _) = open_with(dir.path(), steps.len() as u64, false);
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
    let (owner, opened) = open_with(dir.path(), steps.len() as u64, false);
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
    // An operator's redial is recorded and moves exactly the contacts unknown at that moment.
    let (owner, opened) = open_with(dir.path(), steps.len() as u64, true);
    assert_eq!(opened.redialing_unknown, 2);
    assert_eq!(state_of(&owner, 1), State::Pending);
    assert_eq!(state_of(&owner, 4), State::Pending);
    let conn = open_read_only(&owner.db_path).expect("read");
    let (action, n): (String, i64) = conn
        .query_row("SELECT action, contacts FROM actions", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the action is journaled");
    assert_eq!((action.as_str(), n), ("redial-unknown", 2));
}

#[test]
fn records_round_trip_exactly() {
    let rec = ByteRecord::from(vec![&b"a,b"[..], b"", b"\xe9t\xe9", b"\"q\"\n2"]);
    assert_eq!(decode_record(&encode_record(&rec)), Some(rec));
    assert_eq!(decode_record(&[1, 0, 0, 0]), None);
    assert_eq!(decode_record(&[]), Some(ByteRecord::new()));
}
