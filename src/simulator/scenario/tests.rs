//! Tests of [`super`]: kept beside it, out of the way of reading it.

use super::*;

#[test]
fn globs() {
    assert!(glob("+1415*", "+14155550100"));
    assert!(glob("*0100", "+14155550100"));
    assert!(glob("+1415555010?", "+14155550109"));
    assert!(!glob("+1415555010?", "+141555501000"));
    assert!(glob("*", ""));
    assert!(!glob("+1", "+12"));
}

#[test]
fn seeded_weights_are_reproducible() {
    let s: Scenario = toml::from_str(
        r#"
seed = 3
[[rule]]
weight = 1
steps = ["made"]
[[rule]]
weight = 1
steps = ["failed"]
"#,
    )
    .expect("scenario parses");
    let draw = |s: &Scenario| {
        let mut p = Picker::new(s.clone());
        (0..50)
            .map(|_| p.pick("+1", &BTreeMap::new()).attempts[0].status.clone())
            .collect::<Vec<_>>()
    };
    let a = draw(&s);
    assert_eq!(a, draw(&s));
    assert!(a.iter().any(|x| x == "made") && a.iter().any(|x| x == "failed"));
}

#[test]
fn number_rules_win_and_steps_resolve() {
    let s: Scenario = toml::from_str(
        r#"
[[rule]]
numbers = ["+1415*"]
steps = ["retry", { status = "made", responses = "Q1=2" }]
reply = "drop"
[[rule]]
steps = ["failed"]
"#,
    )
    .expect("scenario parses");
    let mut p = Picker::new(s);
    let script = p.pick("+14155550100", &BTreeMap::new());
    assert_eq!(script.reply, Reply::Drop);
    assert_eq!(script.attempts.len(), 2);
    assert_eq!(script.attempts[0].notes, "No answer. Try in 1 minute ");
    assert_eq!(script.attempts[1].responses, "Q1=2");
    assert_eq!(
        p.pick("+12125550100", &BTreeMap::new()).attempts[0].status,
        "failed"
    );
}

#[test]
fn later_requests_for_a_number_play_the_recall_steps() {
    let s: Scenario = toml::from_str(
        r#"
[[rule]]
numbers = ["+1415*"]
steps = ["failed"]
recalls = [["failed"], ["made"]]
"#,
    )
    .expect("scenario parses");
    let mut p = Picker::new(s);
    let words: Vec<String> = (0..4)
        .map(|_| {
            p.pick("+14155550100", &BTreeMap::new()).attempts[0]
                .status
                .clone()
        })
        .collect();
    assert_eq!(words, ["failed", "failed", "made", "made"]);
    assert_eq!(
        p.pick("+14155550101", &BTreeMap::new()).attempts[0].status,
        "failed"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    assert!(toml::from_str::<Scenario>("[[rule]]\nstep = [\"made\"]").is_err());
}
