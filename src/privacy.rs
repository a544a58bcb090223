//! What logs may show of a person: phone numbers masked to their last four digits and personal fields
//! hidden, unless the operator asked for them whole (`--log-full-numbers`). A leaf, so the engine, the views
//! and the log setup can all mask without depending on one another.

use std::sync::atomic::{AtomicBool, Ordering};

static FULL_NUMBERS: AtomicBool = AtomicBool::new(false);

/// Show numbers and personal data whole from now on (`--log-full-numbers`).
pub fn show_whole(whole: bool) {
    FULL_NUMBERS.store(whole, Ordering::Relaxed);
}

/// A contact's personal data (a name, an appointment) as logs show it: hidden, or whole with
/// `--log-full-numbers`.
pub fn personal(v: &str) -> String {
    if FULL_NUMBERS.load(Ordering::Relaxed) || v.is_empty() {
        v.to_string()
    } else {
        format!("<{} chars>", v.chars().count())
    }
}

/// A phone number as logs show it: `+1*******0123`, or whole with `--log-full-numbers`.
pub fn number(n: &str) -> String {
    if FULL_NUMBERS.load(Ordering::Relaxed) {
        return n.to_string();
    }
    let digits = n.chars().filter(char::is_ascii_digit).count();
    let keep_from = digits.saturating_sub(4);
    let mut seen = 0;
    let mut out = String::with_capacity(n.len());
    // Keep the country code's `+1`-style prefix only when it cannot narrow the number down: the first digit.
    for c in n.chars() {
        if c.is_ascii_digit() {
            out.push(
                if seen >= keep_from || (seen == 0 && n.starts_with('+') && digits > 8) {
                    c
                } else {
                    '*'
                },
            );
            seen += 1;
        } else {
            out.push(c);
        }
    }
    out
}
