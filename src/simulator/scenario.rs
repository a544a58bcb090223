//! Simulator scenarios: what happens to each call.
//!
//! ```toml
//! seed = 7                       # weighted choices are reproducible
//!
//! [[rule]]                       # by number pattern (first match wins); * and ? as in a shell
//! numbers = ["+1415555011*"]
//! steps = ["retry", "retry", { status = "made", responses = "Confirm=1" }]
//!
//! [[rule]]                       # rules without `numbers` are drawn by weight for every other call
//! weight = 3
//! steps = ["made"]
//! ```
//!
//! A step is one dial attempt and appends one record: a status word (`made`, `failed`, `retry`, or any other
//! word, which the gateway would report as is) with optional `notes` and `responses`. The special step
//! `forget` makes the gateway lose the record (later polls get `ERROR: no such call record`). A script that
//! ends on a step that is not `made`/`failed` leaves the call unfinished forever. `reply = "drop"` schedules
//! the call and then closes the connection without answering the call request.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub seed: u64,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Patterns on the `phoneno` parameter as received.
    #[serde(default)]
    pub numbers: Vec<String>,
    #[serde(default = "one")]
    pub weight: u32,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub reply: Reply,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    #[default]
    Normal,
    /// Schedule the call, then drop the connection without an answer.
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Step {
    Word(String),
    Full {
        status: String,
        #[serde(default)]
        notes: Option<String>,
        #[serde(default)]
        responses: Option<String>,
    },
}

/// One attempt, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status: String,
    pub notes: String,
    pub responses: String,
}

impl Attempt {
    pub fn is_final(&self) -> bool {
        self.status == "made" || self.status == "failed"
    }
    pub fn is_forget(&self) -> bool {
        self.status == "forget"
    }
}

impl Step {
    pub fn resolve(&self) -> Attempt {
        let (status, notes, responses) = match self {
            Step::Word(w) => (w.clone(), None, None),
            Step::Full {
                status,
                notes,
                responses,
            } => (status.clone(), notes.clone(), responses.clone()),
        };
        let notes = notes.unwrap_or_else(|| {
            match status.as_str() {
                "made" => "Call succeeded",
                "failed" => "Line Busy",
                // The trailing space is what the captured gateway sends.
                "retry" => "No answer. Try in 1 minute ",
                _ => "",
            }
            .to_string()
        });
        Attempt {
            status,
            notes,
            responses: responses.unwrap_or_default(),
        }
    }
}

/// A scenario with its random source, ready to pick scripts.
pub struct Picker {
    scenario: Scenario,
    rng: StdRng,
}

/// What a call will do.
#[derive(Debug, Clone)]
pub struct Script {
    pub attempts: Vec<Attempt>,
    pub reply: Reply,
}

impl Picker {
    pub fn new(scenario: Scenario) -> Picker {
        let rng = StdRng::seed_from_u64(scenario.seed);
        Picker { scenario, rng }
    }

    pub fn pick(&mut self, phoneno: &str) -> Script {
        let by_number = self
            .scenario
            .rules
            .iter()
            .find(|r| r.numbers.iter().any(|p| glob(p, phoneno)));
        let rule = by_number.or_else(|| {
            let weighted: Vec<&Rule> = self
                .scenario
                .rules
                .iter()
                .filter(|r| r.numbers.is_empty() && r.weight > 0)
                .collect();
            let total: u64 = weighted.iter().map(|r| u64::from(r.weight)).sum();
            if total == 0 {
                return None;
            }
            let mut x = self.rng.random_range(0..total);
            weighted.into_iter().find(|r| {
                let w = u64::from(r.weight);
                if x < w {
                    true
                } else {
                    x -= w;
                    false
                }
            })
        });
        match rule {
            Some(r) => Script {
                attempts: r.steps.iter().map(Step::resolve).collect(),
                reply: r.reply,
            },
            None => Script {
                attempts: vec![Step::Word("made".into()).resolve()],
                reply: Reply::Normal,
            },
        }
    }
}

/// Loads a scenario file.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
    let s: Scenario = toml::from_str(&text)
        .map_err(|e| format!("scenario {}: {}", path.display(), e.message().trim()))?;
    for (i, r) in s.rules.iter().enumerate() {
        if r.steps.is_empty() && r.reply == Reply::Normal {
            // An empty script is allowed (a call that never gets an attempt), but say so if it looks unintended.
            tracing::debug!(
                rule = i + 1,
                "scenario rule with no steps: its calls stay unanswered"
            );
        }
    }
    Ok(s)
}

/// Shell-style pattern: `*` any run, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
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
                .map(|_| p.pick("+1").attempts[0].status.clone())
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
        let script = p.pick("+14155550100");
        assert_eq!(script.reply, Reply::Drop);
        assert_eq!(script.attempts.len(), 2);
        assert_eq!(script.attempts[0].notes, "No answer. Try in 1 minute ");
        assert_eq!(script.attempts[1].responses, "Q1=2");
        assert_eq!(p.pick("+12125550100").attempts[0].status, "failed");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Scenario>("[[rule]]\nstep = [\"made\"]").is_err());
    }
}
