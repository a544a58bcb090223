//! Caps on rows, fields and lines.

use csv::ByteRecord;

use super::*;

#[test]
fn a_row_over_the_cap_is_read_past_and_the_next_rows_are_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.csv");
    let huge = "x".repeat(MAX_ROW + 10);
    std::fs::write(
        &path,
        format!("name,phone\r\na,\"{huge}\"\r\nb,646-555-1000\r\n\"c\",\"q,\"\"uote\"\r\n"),
    )
    .expect("write");
    let mut r = Records::open(&path, Encoding::Utf8, b',').expect("open");
    let mut rec = ByteRecord::new();
    assert_eq!(r.next(&mut rec).expect("header"), Some(Row::Whole));
    assert_eq!(rec, ByteRecord::from(vec!["name", "phone"]));
    match r.next(&mut rec).expect("big row") {
        Some(Row::TooLong { bytes }) => assert!(bytes >= MAX_ROW as u64, "{bytes}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(&rec[0], b"a");
    assert!(rec.as_slice().len() <= MAX_ROW);
    assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
    assert_eq!(rec, ByteRecord::from(vec!["b", "646-555-1000"]));
    assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
    assert_eq!(rec, ByteRecord::from(vec!["c", "q,\"uote"]));
    assert_eq!(r.next(&mut rec).expect("end"), None);
}

#[test]
fn a_quote_that_is_never_closed_is_caught_before_it_swallows_the_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stray.csv");
    let mut text = String::from("name,phone\nAda,646-555-1000\n\"Ben,646-555-1001\n");
    for i in 0..100 {
        text.push_str(&format!("P{i},646-555-{:04}\n", 2000 + i));
    }
    std::fs::write(&path, text).expect("write");
    let mut r = Records::open(&path, Encoding::Utf8, b',').expect("open");
    let mut rec = ByteRecord::new();
    r.next(&mut rec).expect("header");
    assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
    match r.next(&mut rec).expect("row") {
        Some(Row::Runaway { from, lines }) => {
            assert_eq!(from, 3, "the line of the file the row starts on");
            assert!(lines > MAX_LINES_IN_A_ROW, "{lines}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_row_of_countless_empty_fields_is_capped_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wide.csv");
    std::fs::write(&path, format!("a,b\n{}\n1,2\n", ",".repeat(MAX_FIELDS * 3))).expect("write");
    let mut r = Records::open(&path, Encoding::Utf8, b',').expect("open");
    let mut rec = ByteRecord::new();
    r.next(&mut rec).expect("header");
    assert!(matches!(r.next(&mut rec), Ok(Some(Row::TooLong { .. }))));
    assert!(rec.len() <= MAX_FIELDS + 1);
    assert_eq!(r.next(&mut rec).expect("row"), Some(Row::Whole));
    assert_eq!(rec, ByteRecord::from(vec!["1", "2"]));
}
