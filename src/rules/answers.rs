//! IVR answers as an operator names them (`Confirm=1`), for `--recall-unless` and `--stop-on`: one reader and
//! one matcher, so the two settings accept, refuse and match the same values. They once had a reader each, and
//! `--stop-on confirm=1|confirm=2` was taken while `--recall-unless` refused it: an answer that could never
//! match, so everyone who confirmed was reminded again.

use crate::gateway::protocol::Responses;

/// Answers, each a response name and value. Names match in any letter case (the IVR app may spell them
/// otherwise than the operator), values exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers(Vec<(String, String)>);

impl Answers {
    /// Reads `NAME=VALUE` items (already split at commas); `what` names the setting in the error, which is
    /// one line.
    pub fn read(items: &[String], what: &str) -> Result<Answers, String> {
        let mut answers = Vec::new();
        for item in items.iter().filter(|i| !i.trim().is_empty()) {
            let (name, value) = item
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    format!("{what}: {item:?} is not an answer; write it like Confirm=1")
                })?;
            // `|` and `^` separate responses and fields in the gateway's reply: inside one answer they could
            // never match. A control character could not come back from a keypad either.
            if item.contains(['|', '^']) || item.chars().any(char::is_control) {
                return Err(format!(
                    "{what}: {item:?} joins several answers; give each on its own, comma-separated (Confirm=1,Confirm=2: any one of them matches)"
                ));
            }
            answers.push((name.to_string(), value.to_string()));
        }
        Ok(Answers(answers))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first of these answers that `responses` (as the gateway wrote them) contain, as `name=value`.
    pub fn found_in(&self, responses: &str) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let parsed = Responses::parse(responses);
        self.0
            .iter()
            .find(|(k, v)| parsed.get_ignore_case(k) == Some(v.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(items: &[&str]) -> Result<Answers, String> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        Answers::read(&items, "--stop-on")
    }

    #[test]
    fn names_match_in_any_case_and_values_exactly() {
        let a = read(&["Confirm=1", " confirm = 2 "]).expect("answers");
        assert_eq!(a.found_in("confirm=1"), Some("Confirm=1".into()));
        assert_eq!(a.found_in("x=3|CONFIRM=2"), Some("confirm=2".into()));
        assert_eq!(a.found_in("confirm=3"), None);
        assert_eq!(a.found_in(""), None);
        assert_eq!(Answers::default().found_in("confirm=1"), None);
    }

    #[test]
    fn what_could_never_match_is_refused_in_one_line() {
        for bad in [
            "confirm=1|confirm=2",
            "confirm=1^2",
            "confirm",
            "=1",
            "a=\u{7}",
        ] {
            let e = read(&[bad]).expect_err(bad);
            assert!(e.starts_with("--stop-on: "), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
