//! Tests of [`super`]: kept beside it, out of the way of reading it.

use super::*;
use proptest::prelude::*;

fn attempts(body: &str) -> Vec<Attempt> {
    match parse_status_reply(body) {
        Ok(StatusReply::Attempts(a)) => a,
        other => panic!("expected attempts, got {other:?}"),
    }
}

#[test]
fn call_reply_captured_page() {
    let body = "<html><body>\r\nYour call is scheduled for Mon Apr 21 11:51:18 BST 2008. [ReqId=1208775078314]\r\n</body></html>";
    assert_eq!(parse_call_reply(body).as_deref(), Some("1208775078314"));
}

#[test]
fn call_reply_doc_example_and_greedy_trap() {
    assert_eq!(
        parse_call_reply("[ReqId=135798468] and [other]").as_deref(),
        Some("135798468")
    );
}

#[test]
fn call_reply_without_id_is_none() {
    assert_eq!(parse_call_reply("ERROR: missing phoneno"), None);
    assert_eq!(parse_call_reply("[ReqId=]"), None);
    assert_eq!(parse_call_reply("[ReqId=123"), None);
    assert_eq!(parse_call_reply("[ReqId=12 3]"), None);
    assert_eq!(parse_call_reply(""), None);
}

#[test]
fn status_empty_variants() {
    for body in [
        "[]",
        "[]\r\n",
        "\r\n\r\n[]\r\n",
        "  [ ]  ",
        "[\n]",
        "\n[]\n",
    ] {
        assert_eq!(
            parse_status_reply(body),
            Ok(StatusReply::NoAttemptYet),
            "{body:?}"
        );
    }
}

#[test]
fn a_byte_order_mark_before_the_reply_is_ignored() {
    assert_eq!(
        parse_status_reply("\u{feff}[]"),
        Ok(StatusReply::NoAttemptYet)
    );
    assert_eq!(
        parse_remove_reply("\u{feff}[removed]\r\n"),
        RemoveReply::Removed
    );
}

#[test]
fn status_no_such_record() {
    for body in [
        "ERROR: no such call record: 1208431448217",
        "\r\nERROR: no such call record: 1\r\n",
    ] {
        assert_eq!(parse_status_reply(body), Ok(StatusReply::NoSuchRecord));
    }
    assert!(parse_status_reply("ERROR: database locked").is_err());
}

#[test]
fn status_captured_made_with_lf_and_crlf() {
    for eol in ["\n", "\r\n"] {
        let body = format!(
            "[0^null^made^2008 3 17 12 26^2008 3 17 12 25^Message left on answering machine^^^^^{eol}]"
        );
        let a = attempts(&body);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].state(), AttemptState::Made);
        assert_eq!(a[0].notes, "Message left on answering machine");
        // Month is 0-based on the wire: 3 means April.
        assert_eq!(
            a[0].attempted,
            Some(GatewayTime {
                year: 2008,
                month: 4,
                day: 17,
                hour: 12,
                minute: 26
            })
        );
        assert!(a[0].responses.is_empty());
    }
}

#[test]
fn status_retry_history_last_record_decides() {
    let body = "[0^null^retry^2008 3 21 13 2^2008 3 21 13 2^No answer. Try in 1 minute ^^^^^0^null^made^2008 3 21 13 3^2008 3 21 13 2^Call succeeded^^^^^\r\n]";
    let a = attempts(body);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].state(), AttemptState::Retry);
    assert_eq!(a[0].notes, "No answer. Try in 1 minute");
    assert_eq!(a[1].state(), AttemptState::Made);
    assert_eq!(a[0].created, a[1].created);
}

#[test]
fn status_all_retries_is_not_final() {
    let rec = "0^null^retry^2008 3 18 6 18^2008 3 18 6 18^No answer. Try in 1 minute ^^^^^";
    let body = format!("[{rec}{rec}{rec}{rec}\n]");
    let a = attempts(&body);
    assert_eq!(a.len(), 4);
    assert!(!a.last().map(|x| x.state().is_final()).unwrap_or(true));
}

#[test]
fn status_responses_from_the_last_record() {
    let body = "[0^null^retry^2008 3 17 12 25^2008 3 17 12 25^No answer. Try in 1 minute ^^^^^0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^7|Q2=3^^\n]";
    let a = attempts(body);
    let last = &a[1];
    assert_eq!(last.responses.get(BARE_RESPONSE_KEY), Some("7"));
    assert_eq!(last.responses.get("Q2"), Some("3"));
    assert_eq!(last.responses.to_string(), "__response___=7|Q2=3");
}

#[test]
fn made_inside_a_response_value_is_not_a_status() {
    // A bare IVR answer `made` puts `^made^` in the body; the SDKs' substring search calls that "Call Made".
    let a = attempts("[0^null^retry^2008 3 17 12 25^2008 3 17 12 25^No answer^^^made^^\n]");
    assert_eq!(a[0].state(), AttemptState::Retry);
    assert_eq!(a[0].responses.get(BARE_RESPONSE_KEY), Some("made"));
}

#[test]
fn responses_rules() {
    let r = Responses::parse(" AttendMeeting = 1 |Confirm=2|Confirm=3||bare|x=a=b");
    assert_eq!(r.get("AttendMeeting"), Some("1"));
    assert_eq!(r.get("Confirm"), Some("3"));
    assert_eq!(r.get(BARE_RESPONSE_KEY), Some("bare"));
    assert_eq!(r.get("x"), Some("a=b"));
    assert_eq!(
        r.to_string(),
        "AttendMeeting=1|Confirm=3|__response___=bare|x=a=b"
    );
    assert!(Responses::parse("").is_empty());
    assert!(Responses::parse("  ").is_empty());
}

#[test]
fn unknown_status_word_is_not_final() {
    let a = attempts("[0^null^waitagent^2008 3 17 12 26^2008 3 17 12 25^^^^^^]");
    assert_eq!(a[0].state(), AttemptState::Other("waitagent".into()));
    assert!(!a[0].state().is_final());
}

#[test]
fn malformed_bodies() {
    for body in [
        "<html><body>HTTP Status 500 - Internal Server Error</body></html>",
        "[0^null^made^2008 3 17 12 26^",
        "[0^null^^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^^^\n]",
        "[garbage^0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^^^\n]",
        "",
        "[removed]",
    ] {
        assert!(parse_status_reply(body).is_err(), "{body:?}");
    }
}

#[test]
fn irregular_records_are_read_where_their_status_is_certain() {
    // Nine fields (one `^` short), and a `^` inside a response value (eleven).
    let a = attempts("[0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^^\n]");
    assert_eq!(a[0].state(), AttemptState::Made);
    assert!(
        a[0].irregular
            .as_deref()
            .is_some_and(|n| n.contains("9 fields"))
    );
    let a = attempts(
        "[0^null^retry^2008 3 18 6 18^2008 3 18 6 18^No answer^^^^^0^null^made^2008 3 18 6 19^2008 3 18 6 18^Call succeeded^^^Q=1^2^^\n]",
    );
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].irregular, None);
    assert_eq!(a[1].state(), AttemptState::Made);
    assert_eq!(a[1].responses.get("Q"), Some("1^2"));
    assert!(
        a[1].irregular
            .as_deref()
            .is_some_and(|n| n.contains("11 fields"))
    );
    // Regular records say nothing.
    let a = attempts("[0^null^made^2008 3 17 12 24^2008 3 17 12 24^Call succeeded^^^^^\n]");
    assert_eq!(a[0].irregular, None);
    // Ten `^` inside a response value: twenty fields, but the second ten are not a record.
    let a = attempts(
        "[0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^Q=a^b^c^d^e^f^g^h^i^j^k^^\n]",
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].state(), AttemptState::Made);
    assert!(a[0].irregular.is_some());
}

#[test]
fn gateway_time_rejects_nonsense() {
    assert_eq!(GatewayTime::parse("2008 12 1 1 1"), None); // month index 12 is the 13th month
    assert_eq!(GatewayTime::parse("2008 1 30 1 1"), None); // 30 February
    assert_eq!(GatewayTime::parse("2008 3 17 12"), None);
    assert_eq!(GatewayTime::parse("2008 3 17 12 1 5"), None);
    assert!(GatewayTime::parse("2008  0  1  0  0").is_some());
}

#[test]
fn remove_replies() {
    assert_eq!(parse_remove_reply("[removed]\r\n"), RemoveReply::Removed);
    assert_eq!(
        parse_remove_reply("ERROR: no such call record: 5"),
        RemoveReply::NoSuchRecord
    );
    assert!(matches!(
        parse_remove_reply("<html>500</html>"),
        RemoveReply::Unexpected(_)
    ));
}

fn field() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 .,:;!?'-]{0,24}"
}

fn time() -> impl Strategy<Value = GatewayTime> {
    (1990i16..2100, 1i8..=12, 1i8..=28, 0i8..24, 0i8..60).prop_map(
        |(year, month, day, hour, minute)| GatewayTime {
            year,
            month,
            day,
            hour,
            minute,
        },
    )
}

fn record() -> impl Strategy<Value = (String, GatewayTime, String, Vec<(String, String)>)> {
    (
        prop_oneof![
            Just("made".to_string()),
            Just("failed".to_string()),
            Just("retry".to_string()),
            "[a-z]{1,10}"
        ],
        time(),
        field(),
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9]{0,8}", "[0-9*#]{0,4}"), 0..4),
    )
}

proptest! {
    #[test]
    fn formatted_histories_round_trip(
        recs in proptest::collection::vec(record(), 1..6),
        lead in "[\r\n ]{0,4}",
        eol in prop_oneof![Just("\n"), Just("\r\n"), Just("")],
    ) {
        let created = recs[0].1;
        let mut body = format!("{lead}[");
        for (status, t, notes, resp) in &recs {
            let r = resp.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("|");
            body.push_str(&format_record(status, *t, created, notes, &r));
        }
        body.push_str(eol);
        body.push(']');
        body.push_str(&lead);
        let parsed = attempts(&body);
        prop_assert_eq!(parsed.len(), recs.len());
        for (a, (status, t, notes, resp)) in parsed.iter().zip(&recs) {
            prop_assert_eq!(&a.status, status);
            prop_assert_eq!(a.attempted, Some(*t));
            prop_assert_eq!(a.created, Some(created));
            prop_assert_eq!(&a.notes, notes.trim());
            for (k, v) in resp {
                // Last duplicate wins.
                let want = resp.iter().rev().find(|(k2, _)| k2 == k).map(|(_, v2)| v2.as_str());
                prop_assert_eq!(a.responses.get(k), want);
                let _ = v;
            }
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bodies(body in "\\PC{0,200}") {
        let _ = parse_status_reply(&body);
        let _ = parse_call_reply(&body);
        let _ = parse_remove_reply(&body);
        let _ = excerpt(&body);
    }

    #[test]
    fn arbitrary_caret_soup_is_classified_not_misread(body in "\\[[0-9a-z ^|=]{0,120}\\]") {
        // Whatever it is, a success must hold whole records with a status word each.
        if let Ok(StatusReply::Attempts(a)) = parse_status_reply(&body) {
            prop_assert!(!a.is_empty());
            prop_assert!(a.iter().all(|x| !x.status.is_empty()));
        }
    }
}
