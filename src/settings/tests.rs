//! Settings: defaults, the example campaigns, refusals, gateway URLs.

use std::path::{Path, PathBuf};

use super::*;
use crate::cli::RunArgs;
use crate::error::Result;

#[test]
fn default_paths() {
    let out = default_output(Path::new("/x/contacts.csv"));
    assert_eq!(out, PathBuf::from("/x/contacts.results.csv"));
    assert_eq!(
        default_state_dir(&out),
        PathBuf::from("/x/contacts.results.csv.state")
    );
}

#[test]
fn the_example_campaigns_are_valid() {
    let demo = RunConfig::from_args(RunArgs {
        campaign: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/campaigns/demo.toml"
        ))),
        ..RunArgs::default()
    })
    .expect("demo.toml");
    assert!(matches!(
        demo.gateways[0].target,
        GatewayTarget::Simulator(_)
    ));
    let nightly = RunConfig::from_args(RunArgs {
        campaign: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/campaigns/nightly/reminders.toml"
        ))),
        input: Some(PathBuf::from("/srv/ivr/lists/reminders-2026-11-26.csv")),
        ..RunArgs::default()
    })
    .expect("nightly/reminders.toml");
    assert!(nightly.rules.window.is_some());
    assert_eq!(nightly.rules.cap.map(|c| c.0), Some(1));
}

/// The settings of a campaign file with these lines (and a list beside it).
fn from_toml(extra: &str, flags: RunArgs) -> Result<RunConfig> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.csv"), "phone\n6465550100\n").expect("list");
    let toml = format!("input = \"c.csv\"\napp = \"A\"\n{extra}");
    std::fs::write(dir.path().join("c.toml"), toml).expect("campaign");
    RunConfig::from_args(RunArgs {
        campaign: Some(dir.path().join("c.toml")),
        ..flags
    })
}

#[test]
fn settings_that_would_send_nonsense_are_refused() {
    let refused = |extra: &str| {
        from_toml(extra, RunArgs::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("accepted: {extra}"))
    };
    let e = refused("caller-id-param = \"detection\"\n");
    assert!(e.contains("both"), "{e}");
    let e = refused("[fields]\nattendee = \"{phone}\"\nAttendee = \"{phone}\"\n");
    assert!(e.contains("one field"), "{e}");
    let e = refused("recall-on = []\nmax-attempts = 2\n");
    assert!(e.contains("needs --recall-on"), "{e}");
    let e = refused("info = \"\"\n");
    assert!(e.contains("info"), "{e}");
    let e = refused(
        "[[gateways]]\nurl = \"http://127.0.0.1:8155\"\n[[gateways]]\nurl = \"http://127.0.0.1:8155/\"\n",
    );
    assert!(e.contains("listed twice"), "{e}");
    let e = refused("recall-on = [\"no-response\"]\nrecall-unless = [\"Confirm=1|Q=2\"]\n");
    assert!(e.contains("joins several answers"), "{e}");
    let e = refused("[fields]\n\"\u{17f}ms\" = \"1\"\n");
    assert!(e.contains("ASCII"), "{e}");
    for (extra, says) in [
        (
            "metrics-file = \"r.csv\"\noutput = \"r.csv\"\n",
            "is also --output",
        ),
        (
            "summary-json = \"s\"\nmetrics-file = \"s\"\n",
            "is also --summary-json",
        ),
        (
            "output = \"r.csv\"\nmetrics-file = \"r.csv.state/journal.sqlite\"\n",
            "is a journal",
        ),
        ("summary-json = \"/dev/null\"\n", "not a regular file"),
        ("metrics-file = \".\"\n", "a directory"),
        (
            "output = \"r.csv\"\nmetrics-file = \"sub/../r.csv.state/journal.sqlite\"\n",
            "is a journal",
        ),
        ("summary-json = \"sub/../c.csv\"\n", "is the contact list"),
        ("output = \"c.toml\"\n", "is the campaign file"),
        (
            "ledger = \"l.sqlite\"\nmetrics-file = \"l.sqlite\"\n",
            "is the cap ledger",
        ),
    ] {
        let e = refused(extra);
        assert!(e.contains(says), "{extra}: {e}");
    }
    assert!(from_toml("", RunArgs::default()).is_ok());
}

#[test]
fn gateway_urls() {
    assert!(parse_gateway_url("http://10.0.0.5:8155").is_ok());
    assert!(parse_gateway_url("gw.local:8155").is_ok());
    assert!(parse_gateway_url("http://").is_err());
    assert!(parse_gateway_url("ftp://x").is_err());
    assert!(parse_gateway_url("http://exa mple").is_err());
    assert!(parse_gateway_url("gw_01.clinic.lan").is_ok());
    assert!(parse_gateway_url("http://[::1]:8155").is_ok());
    assert!(parse_gateway_url("https://bücher.example/").is_ok());
    let key = |t: &str| gateway_key(&parse_gateway_url(t).expect(t));
    assert_eq!(
        key("http://gw:8155/voicent//"),
        key("http://gw:8155/voicent")
    );
    assert_eq!(key("http://GW:8155/"), key("gw:8155"));
    assert_eq!(key("http://gw:80"), key("http://gw"));
    assert_eq!(key("http://[::ffff:127.0.0.1]:8155"), key("127.0.0.1:8155"));
    assert!(parse_gateway_url("http:///x").is_err());
    for typo in ["http:/x", "http:\\\\x", "http://\\x", "HTTPS:x"] {
        assert!(parse_gateway_url(typo).is_err(), "{typo}");
    }
    assert!(parse_gateway_url("http://127.0.0.1:0").is_err());
    for odd in ["http://gw:8155/?a=1", "http://gw:8155/#second"] {
        let err = parse_gateway_url(odd).expect_err(odd);
        assert!(err.contains("query or fragment"), "{odd}: {err}");
    }
    for typo in [
        "ht!tp:/x y",
        "http://gw..lan",
        "http://-gw.lan",
        "http://gw*.lan",
        " http://gw /x",
    ] {
        let err = parse_gateway_url(typo).expect_err(typo);
        assert!(err.contains("not a gateway URL"), "{typo}: {err}");
    }
    let err = parse_gateway_url("http://user:hunter2@gw:8155").expect_err("password in URL");
    assert!(!err.contains("hunter2"), "{err}");
    let err = parse_gateway_url("http://user:hunter2@exa mple").expect_err("bad URL");
    assert!(!err.contains("hunter2"), "{err}");
}

/// `--stop-on` and `--recall-unless` name answers alike (the docs say they match alike): every value either
/// both accept or both refuse, with one line saying why, naming the setting it came from.
#[test]
fn stop_on_and_recall_unless_accept_and_refuse_the_same_answers() {
    for value in [
        "confirm=1|confirm=2",
        "Confirm=1^x",
        "confirm",
        "=1",
        "confirm=1\u{7}",
        "Confirm=1",
        " confirm = 2 ",
    ] {
        let recall = RunConfig::from_args(RunArgs {
            input: Some(PathBuf::from("c.csv")),
            app: Some("A".into()),
            recall_on: Some(vec!["no-response".into()]),
            recall_unless: Some(vec![value.into()]),
            ..RunArgs::default()
        });
        let stop = RunConfig::from_args(RunArgs {
            input: Some(PathBuf::from("c.csv")),
            app: Some("A".into()),
            key_column: Some("id".into()),
            stop_on: Some(vec![value.into()]),
            ..RunArgs::default()
        });
        match (recall, stop) {
            (Ok(r), Ok(s)) => {
                let r = r.recall.expect("a recall policy");
                let s = s.reminders.expect("reminders");
                assert_eq!(r.unless, s.stop_on, "{value:?}: read alike");
            }
            (Err(r), Err(s)) => {
                let (r, s) = (r.to_string(), s.to_string());
                assert!(r.starts_with("--recall-unless: "), "{value:?}: {r}");
                assert!(s.starts_with("--stop-on: "), "{value:?}: {s}");
                assert_eq!(
                    r.trim_start_matches("--recall-unless: "),
                    s.trim_start_matches("--stop-on: "),
                    "{value:?}: refused for the same reason"
                );
                assert!(!s.trim_end().contains('\n'), "one line: {s}");
            }
            (r, s) => panic!(
                "{value:?}: recall-unless {} but stop-on {}",
                if r.is_ok() { "accepts" } else { "refuses" },
                if s.is_ok() { "accepts" } else { "refuses" },
            ),
        }
    }
}

/// `--min-notice` reads days as `--remind-before` does: `30d` was refused while `2d` was a lead.
#[test]
fn min_notice_reads_days_as_remind_before_does() {
    let config = RunConfig::from_args(RunArgs {
        input: Some(PathBuf::from("c.csv")),
        app: Some("A".into()),
        key_column: Some("id".into()),
        appointment_column: Some("at".into()),
        timezone: Some("America/Chicago".into()),
        remind_before: Some(vec!["31d".into()]),
        min_notice: Some("30d".into()),
        ..RunArgs::default()
    })
    .expect("--min-notice 30d");
    let timing = &config
        .reminders
        .and_then(|r| r.appointments)
        .expect("appointments")
        .timing;
    assert_eq!(timing.min_notice, jiff::SignedDuration::from_hours(30 * 24));
}

/// A wrong `--appointment-format` is refused before any call (exit 64), not read as every row `invalid`: a
/// directive that is no directive, or a format that cannot give a date and time.
#[test]
fn an_appointment_format_that_reads_no_time_is_refused() {
    let with = |format: &str| {
        RunConfig::from_args(RunArgs {
            input: Some(PathBuf::from("c.csv")),
            app: Some("A".into()),
            key_column: Some("id".into()),
            appointment_column: Some("at".into()),
            appointment_format: Some(format.into()),
            timezone: Some("America/Chicago".into()),
            remind_before: Some(vec!["48h".into()]),
            ..RunArgs::default()
        })
    };
    for bad in ["%Q", "%K %H:%M", "%H:%M", "%Y-%m-%d %Z", "tomorrow"] {
        let e = with(bad)
            .err()
            .unwrap_or_else(|| panic!("accepted {bad:?}"));
        assert_eq!(e.exit_code(), crate::error::exit::USAGE, "{bad:?}");
        let e = e.to_string();
        assert!(e.starts_with("--appointment-format: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    for good in ["%d.%m.%Y %H:%M", "%m/%d/%Y %I:%M %p", "%Y-%m-%dT%H:%M:%S%z"] {
        with(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
}
