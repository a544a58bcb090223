//! The life-cycle table as a function: every rule, every refusal, and what each event writes.

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

#[test]
fn each_event_writes_its_rules_state_and_ends_the_attempts_it_should() {
    let answer = Answer {
        responses: "Q=1".into(),
        attempts: 1,
        notes: String::new(),
    };
    let events = [
        Event::Interrupted,
        Event::Redial { action: 3 },
        Event::Made(answer.clone()),
        Event::Recall {
            outcome: State::Failed,
            answer,
            due_ms: 9,
            not_before_ms: None,
        },
        Event::Settle {
            outcome: State::Failed,
            detail: Some("recall not placed".into()),
        },
    ];
    for e in &events {
        let cols = effects(e, 7);
        let to = e.kind().rule().1;
        assert_eq!(cols[0], ("state", Value::Text(to.as_str().into())), "{e:?}");
        let mut names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cols.len(), "{e:?} sets a column twice");
        // Another call to the same person counts as one more attempt; nothing else moves the counter.
        let counts = cols.contains(&("attempt", Value::Increment));
        assert_eq!(
            counts,
            matches!(e, Event::Redial { .. } | Event::Recall { .. }),
            "{e:?}"
        );
    }
    assert_eq!(ends_attempt(&events[0]), Some(State::Unknown));
    assert_eq!(ends_attempt(&events[1]), None);
    assert_eq!(ends_attempt(&events[3]), Some(State::Failed));
    assert!(
        effects(&events[4], 7).contains(&("detail", Value::Append("recall not placed".into())))
    );
}
