//! Reading numbers and lists.

use csv::ByteRecord;

use super::*;
use crate::types::NumberFormat;

fn call(text: &str, region: Region, f: NumberFormat) -> (String, String) {
    match normalise(text, region, f) {
        Verdict::Call { e164, dial, .. } => (e164, dial),
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn formats() {
    assert_eq!(
        call("(415) 555-2671", Region::US, NumberFormat::E164),
        ("+14155552671".into(), "+14155552671".into())
    );
    assert_eq!(
        call("415 555 2671", Region::US, NumberFormat::Digits).1,
        "14155552671"
    );
    assert_eq!(
        call("415.555.2671", Region::US, NumberFormat::National).1,
        "4155552671"
    );
    assert_eq!(
        call("020 7946 0018", Region::GB, NumberFormat::National).1,
        "02079460018"
    );
    assert_eq!(
        call("+44 20 7946 0018", Region::US, NumberFormat::E164).0,
        "+442079460018"
    );
}

#[test]
fn invalid_numbers_say_why() {
    for t in [
        "",
        "  ",
        "abc",
        "12",
        "4.15555E+09",
        "1,5E+10",
        "+1 555 0100",
    ] {
        assert!(
            matches!(
                normalise(t, Region::US, NumberFormat::E164),
                Verdict::Invalid(_)
            ),
            "{t:?}"
        );
    }
    match normalise("4.15555E+09", Region::US, NumberFormat::E164) {
        Verdict::Invalid(r) => assert!(r.contains("scientific")),
        v => panic!("{v:?}"),
    }
}

#[test]
fn letters_are_typos_and_extensions_are_noted() {
    match normalise("646-555-10O1", Region::US, NumberFormat::E164) {
        Verdict::Invalid(r) => assert!(r.contains("letters"), "{r}"),
        v => panic!("{v:?}"),
    }
    assert!(matches!(
        normalise("1-800-FLOWERS", Region::US, NumberFormat::E164),
        Verdict::Invalid(_)
    ));
    for (text, ext) in [
        ("(415) 555-2671 x123", "123"),
        ("415 555 2671 ext. 9", "9"),
        ("415-555-2671 extension 45", "45"),
        ("+1 415 555 2671#77", "77"),
    ] {
        assert_eq!(split_extension(text).1, Some(ext), "{text}");
        assert_eq!(
            call(text, Region::US, NumberFormat::E164).0,
            "+14155552671",
            "{text}"
        );
    }
    assert_eq!(split_extension("4155552671").1, None);
    assert_eq!(split_extension("x123").1, None);
}

#[test]
fn a_number_with_its_own_country_code_keeps_its_national_part_under_any_default_region() {
    // phonenumber 0.3 stripped the default region's trunk prefix (1 for US, 0 for GB and DE) from these,
    // and dialed somebody else: +49 574 833 7887, +86 312 3456 786, +241 6031234.
    for region in [Region::US, Region::GB, Region::DE] {
        for (text, e164) in [
            ("+49 157 4833 7887", "+4915748337887"),
            ("+86 131 2345 6786", "+8613123456786"),
            ("+91 186 0345 1234", "+9118603451234"),
            ("+241 06 03 12 34", "+24106031234"),
            ("+39 02 1234 5678", "+390212345678"),
            ("+44 20 7946 0018", "+442079460018"),
            ("+55 11 2345 6789", "+551123456789"),
            ("+33 1 23 45 67 89", "+33123456789"),
            ("+86 10 1234 5678", "+861012345678"),
            ("+61 1800 123 456", "+611800123456"),
            ("+1 273 201 1234", "+12732011234"),
        ] {
            match normalise(text, region, NumberFormat::E164) {
                Verdict::Call { e164: got, .. } => assert_eq!(got, e164, "{text} ({region})"),
                other => panic!("{text} ({region}): {other:?}"),
            }
        }
    }
    // A number's own trunk prefix after its country code is libphonenumber's to drop (+44 0 20 is London).
    assert_eq!(
        call("+44 020 7946 0018", Region::US, NumberFormat::E164).0,
        "+442079460018"
    );
}

#[test]
fn a_region_is_one_the_number_data_has() {
    assert_eq!(region("gb"), Some(Region::GB));
    assert_eq!(region(" US "), Some(Region::US));
    for bad in ["XX", "ZZ", "001", "U", "USA", ""] {
        assert_eq!(region(bad), None, "{bad:?}");
    }
}

#[test]
fn ragged_rows_are_invalid() {
    let rec = ByteRecord::from(vec!["a", "4155552671"]);
    assert!(
        matches!(judge(&rec, 3, 1, Region::US, NumberFormat::E164), Verdict::Invalid(r) if r.contains("2 fields"))
    );
    assert!(matches!(
        judge(&rec, 2, 1, Region::US, NumberFormat::E164),
        Verdict::Call { .. }
    ));
}
