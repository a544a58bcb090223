//! Tests of [`super`]: kept beside it, out of the way of reading it.

use super::*;

#[test]
fn templates_name_columns_and_escape_braces() {
    let t = Template::parse("{date} {Time} {{x}}").expect("parse");
    assert_eq!(t.columns().collect::<Vec<_>>(), ["date", "Time"]);
    let headers = ByteRecord::from(vec!["Name", "DATE", "time"]);
    let f = vec![
        parse_field("appt={date} {Time} {{x}}").expect("field"),
        parse_field("attendee={ name }").expect("field"),
    ];
    let bound = Bound::new(&f, None, &[], &headers).expect("bind");
    let row = ByteRecord::from(vec![" Zoë ", "2026-12-02", "09:30"]);
    let r = bound.render(&row).expect("render");
    assert_eq!(
        r.fields,
        vec![
            ("appt".to_string(), "2026-12-02 09:30 {x}".to_string()),
            ("attendee".to_string(), "Zoë".to_string())
        ]
    );
}

#[test]
fn bad_templates_and_fields_say_why() {
    for bad in ["{name", "name}", "{}", "a{b{c}}", "x\ny"] {
        assert!(Template::parse(bad).is_err(), "{bad:?}");
    }
    for bad in ["=x", "phoneno={a}", "STARTAPP=x", "info=x", "noequals"] {
        assert!(parse_field(bad).is_err(), "{bad:?}");
    }
    // Fields that would move a call outside its window, make the gateway call again, or run a program.
    for bad in [
        "calltime=600",
        "Schedule=t",
        "recurtype=0",
        "rangetotal={n}",
        "startexec=x",
        "reqid=5",
        "SMS=1",
    ] {
        let e = parse_field(bad).expect_err(bad);
        assert!(
            e.contains("how often or what the gateway calls"),
            "{bad}: {e}"
        );
    }
    assert!(
        Template::parse("one\u{2028}two").is_err(),
        "a Unicode line separator"
    );
    let headers = ByteRecord::from(vec!["name"]);
    let e = Bound::new(
        &[parse_field("a={nmae}").expect("field")],
        None,
        &[],
        &headers,
    )
    .expect_err("unknown column");
    assert!(e.contains("\"nmae\"") && e.contains("columns: name"), "{e}");
}

#[test]
fn required_fields_and_control_characters_make_a_row_invalid() {
    let headers = ByteRecord::from(vec!["name", "note"]);
    let f = vec![
        parse_field("attendee={name}").expect("field"),
        parse_field("note={note}").expect("field"),
    ];
    let bound = Bound::new(&f, None, &["attendee".into()], &headers).expect("bind");
    assert!(bound.render(&ByteRecord::from(vec!["", "x"])).is_err());
    assert!(
        bound
            .render(&ByteRecord::from(vec!["Ada", "two\nlines"]))
            .is_err()
    );
    let ok = bound
        .render(&ByteRecord::from(vec!["Ada", ""]))
        .expect("empty is fine unless required");
    assert_eq!(ok.fields[1].1, "");
}

#[test]
fn caller_ids() {
    assert_eq!(caller_id("(646) 555-0100").as_deref(), Ok("6465550100"));
    assert_eq!(caller_id("1 646 555 0100").as_deref(), Ok("16465550100"));
    assert_eq!(
        caller_id("+44 20 7946 0018").as_deref(),
        Ok("+442079460018")
    );
    for bad in [
        "555-0100",
        "646555010012",
        "+1",
        "abc",
        "",
        "+00000000",
        "0000000000",
        "+123456789012345",
        "1234567890",
    ] {
        assert!(caller_id(bad).is_err(), "{bad:?}");
    }
    assert!(caller_id("1-800-555-0199").is_ok(), "toll-free");
    // Judged by libphonenumber 9.0.42: a German mobile and a new North American area code are numbers,
    // and a German mobile range that 9.0.42 does not know yet is not.
    assert!(caller_id("+49 157 4833 7887").is_ok());
    assert!(caller_id("273 201 1234").is_ok());
    assert!(caller_id("+49 1541 0123456").is_err());
}
