//! Tests of [`super`]: a rolling export's versions moving touches along by the clock.

use super::*;
use crate::rules::touches::{Timing, read_leads};
use crate::settings::reminders::Appointments;
use crate::store::journal::{self, Binding};

fn settings() -> Reminders {
    let tz = crate::zones::zone("America/New_York").expect("zone");
    Reminders {
        key_column: "id".into(),
        appointments: Some(Appointments {
            column: "at".into(),
            format: None,
            timezone: tz,
            timezone_name: "America/New_York".into(),
            timing: Timing {
                leads: read_leads(&["48h".into(), "24h".into()], "x").expect("leads"),
                min_notice: jiff::SignedDuration::from_hours(2),
            },
        }),
        stop_on: crate::rules::answers::Answers::read(&["confirm=1".into()], "x").expect("answers"),
        skip_if: Vec::new(),
    }
}

fn row(line: u64, key: &str, at: Timestamp, phone: &str) -> Listed {
    let rec = ByteRecord::from(vec![key, phone, "x"]);
    Listed {
        line,
        key: key.into(),
        record: encode_record(&rec),
        verdict: Verdict::Call {
            e164: phone.into(),
            dial: phone.into(),
            country: 1,
        },
        tz: None,
        note: None,
        appointment: Ok(Some(at)),
        skipped: None,
    }
}

/// Each touch row of `key`, oldest first: (touch, state).
fn touches(conn: &Connection, key: &str) -> Vec<(i64, String)> {
    conn.prepare(
        "SELECT t.touch, c.state FROM touches t JOIN contacts c ON c.row = t.row WHERE t.key = ?1 ORDER BY t.row",
    )
    .expect("query")
    .query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))
    .expect("rows")
    .map(|r| r.expect("row"))
    .collect()
}

#[tokio::test]
async fn versions_move_touches_along_the_life_cycle_by_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let headers = ByteRecord::from(vec!["id", "phone", "at"]);
    let digest = binding_digest("id");
    let binding = Binding {
        digest: &digest,
        input_name: "export.csv",
        headers: &headers,
        delimiter: b',',
        reading: "",
    };
    let (owner, _) = journal::open(dir.path(), &binding, || {
        Ok(std::iter::empty::<Result<NewContact>>())
    })
    .expect("open");
    let at: Timestamp = "2027-01-13T15:00:00Z".parse().expect("time");
    let h = jiff::SignedDuration::from_hours;
    let take = |rows: Vec<Listed>, now: Timestamp| {
        let j = owner.journal.clone();
        async move {
            j.read(move |c| take_version(c, rows, &settings(), now.as_millisecond()))
                .await
                .expect("version")
        }
    };
    // 30 hours ahead: the 48h touch is due now, the 24h one is not.
    let t = take(
        vec![
            row(1, "K1", at, "+16465550100"),
            row(2, "K2", at + h(100), "+16465550101"),
        ],
        at - h(30),
    )
    .await;
    assert_eq!((t.new_keys, t.due), (2, 1));
    let read = |key: &'static str| {
        let j = owner.journal.clone();
        async move { j.read(move |c| Ok(touches(c, key))).await.expect("read") }
    };
    assert_eq!(
        read("K1").await,
        [(0, "pending".to_string()), (1, "not_due".to_string())]
    );
    assert_eq!(
        read("K2").await,
        [(0, "not_due".to_string()), (1, "not_due".to_string())]
    );
    // Five hours later, the same version: nothing moves (due and not yet done, never twice).
    let t = take(
        vec![
            row(1, "K1", at, "+16465550100"),
            row(2, "K2", at + h(100), "+16465550101"),
        ],
        at - h(25),
    )
    .await;
    assert_eq!((t.new_keys, t.due, t.lapsed), (0, 0, 0));
    // The 48h touch was never made: at 20 hours ahead it is skipped and the 24h one falls due. K2 left the
    // export; K1's number changed, for its touch still to be made.
    let t = take(vec![row(1, "K1", at, "+16465550199")], at - h(20)).await;
    assert_eq!((t.due, t.lapsed, t.withdrawn), (1, 1, 1));
    assert_eq!(
        read("K1").await,
        [(0, "too_late".to_string()), (1, "pending".to_string())]
    );
    assert_eq!(
        read("K2").await,
        [(0, "withdrawn".to_string()), (1, "withdrawn".to_string())]
    );
    let dial: String = owner
        .journal
        .read(|c| {
            Ok(c.query_row(
                "SELECT dialed_number FROM contacts c JOIN touches t ON t.row = c.row WHERE t.key = 'K1' AND t.touch = 1",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .expect("read");
    assert_eq!(dial, "+16465550199");
    // K1 moved a day later: the old time's open touch is withdrawn, the new time's are planned.
    let t = take(vec![row(1, "K1", at + h(24), "+16465550199")], at - h(19)).await;
    assert_eq!(t.rescheduled, 1);
    assert_eq!(
        read("K1").await,
        [
            (0, "too_late".to_string()),
            (1, "withdrawn".to_string()),
            // 43 hours before the new time: its 48h touch is due.
            (0, "pending".to_string()),
            (1, "not_due".to_string())
        ]
    );
    owner.close().await;
}
