//! Simulator scenarios: what happens to each call.
//!
//! ```toml
//! seed = 7                       # weighted choices are reproducible
//!
//! [[rule]]                       # by number pattern (first match wins); * and ? as in a shell
//! numbers = ["+1415555011*"]
//! steps = ["retry", "retry", { status = "made", responses = "Confirm=1" }]
//!
//! [[rule]]                       # by the fields the request carries (all must match), with or without numbers
//! fields = { attendee = "Dr *", detection = "3" }
//! steps = [{ status = "made", responses = "Confirm=1" }]
//!
//! [[rule]]                       # the first polls answered so, in order: missing, error, garbage or normal
//! numbers = ["+1212555019?"]
//! polls = ["missing", "error", "missing", "garbage", "missing"]
//! steps = ["made"]
//!
//! [[rule]]                       # rules without `numbers` or `fields` are drawn by weight for every other call
//! weight = 3
//! steps = ["made"]
//! ```
//!
//! A step is one dial attempt and appends one record: a status word (`made`, `failed`, `retry`, or any other
//! word, which the gateway would report as is) with optional `notes` and `responses`. The special step
//! `forget` makes the gateway lose the record (later polls get `ERROR: no such call record`). A script that
//! ends on a step that is not `made`/`failed` leaves the call unfinished forever. `reply` says how the call
//! request is answered once the call is scheduled: `normal`, `drop` (the connection closes without an answer),
//! `error` (HTTP 500), `bad-gateway` (HTTP 502, as a proxy in front of it would), `reworded` (a page
//! without `[ReqId=…]`, as a gateway release that words its page differently would) or `reuse-id` (the
//! previous request's id, as a gateway whose counter went back would).

use std::collections::BTreeMap;
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
    #[serde(default)]
    pub faults: Faults,
}

/// Gateway misbehaviour, drawn from the scenario's seed so a run can be replayed.
///
/// ```toml
/// [faults]
/// call-unavailable = 0.2   # call requests answered 503, nothing scheduled
/// call-refused = 0.1       # call requests answered 400, nothing scheduled
/// call-drop = 0.1          # call requests scheduled, then the connection closed without an answer
/// call-error = 0.1         # call requests scheduled, then answered 500
/// call-reworded = 0.1      # call requests scheduled, answered with a page without [ReqId=…]
/// status-error = 0.1       # status polls answered 500
/// status-garbage = 0.1     # status polls answered 200 with a page that is not a status reply
/// slow = "2s"              # answers delayed this long...
/// slow-rate = 0.5          # ...this often (default 1 when slow is set)
/// outages = [{ after = "2s", lasting = "3s" }]   # connections refused (the gateway host is down)
/// restart-after = "5s"     # the gateway restarts once and forgets every call record
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Faults {
    #[serde(default)]
    pub call_unavailable: f64,
    #[serde(default)]
    pub call_refused: f64,
    #[serde(default)]
    pub call_drop: f64,
    #[serde(default)]
    pub call_error: f64,
    #[serde(default)]
    pub call_reworded: f64,
    #[serde(default)]
    pub status_error: f64,
    #[serde(default)]
    pub status_garbage: f64,
    #[serde(default)]
    pub slow: Option<String>,
    #[serde(default)]
    pub slow_rate: Option<f64>,
    #[serde(default)]
    pub outages: Vec<OutageSpec>,
    #[serde(default)]
    pub restart_after: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    pub after: String,
    pub lasting: String,
}

/// Fault settings from `simulate` flags; each one given replaces the scenario file's.
#[derive(Debug, Clone, Default)]
pub struct FaultFlags {
    pub seed: Option<u64>,
    pub call_unavailable: Option<f64>,
    pub call_refused: Option<f64>,
    pub call_drop: Option<f64>,
    pub call_error: Option<f64>,
    pub call_reworded: Option<f64>,
    pub status_error: Option<f64>,
    pub status_garbage: Option<f64>,
    pub slow: Option<String>,
    pub slow_rate: Option<f64>,
    /// `AFTER+LASTING`, e.g. `30s+2m`.
    pub outages: Vec<String>,
    pub restart_after: Option<String>,
}

impl Scenario {
    /// Applies command-line fault settings over the file's.
    pub fn apply(&mut self, f: &FaultFlags) -> Result<(), String> {
        let faults = &mut self.faults;
        if let Some(s) = f.seed {
            self.seed = s;
        }
        for (slot, v) in [
            (&mut faults.call_unavailable, f.call_unavailable),
            (&mut faults.call_refused, f.call_refused),
            (&mut faults.call_drop, f.call_drop),
            (&mut faults.call_error, f.call_error),
            (&mut faults.call_reworded, f.call_reworded),
            (&mut faults.status_error, f.status_error),
            (&mut faults.status_garbage, f.status_garbage),
        ] {
            if let Some(v) = v {
                *slot = v;
            }
        }
        if f.slow.is_some() {
            faults.slow = f.slow.clone();
        }
        if f.slow_rate.is_some() {
            faults.slow_rate = f.slow_rate;
        }
        if !f.outages.is_empty() {
            faults.outages = f
                .outages
                .iter()
                .map(|o| {
                    let (after, lasting) = o.split_once('+').ok_or_else(|| {
                        format!("--fault-outage {o:?}: write it as AFTER+LASTING, e.g. 30s+2m")
                    })?;
                    Ok(OutageSpec {
                        after: after.trim().to_string(),
                        lasting: lasting.trim().to_string(),
                    })
                })
                .collect::<Result<_, String>>()?;
        }
        if f.restart_after.is_some() {
            faults.restart_after = f.restart_after.clone();
        }
        faults.plan().map(|_| ())
    }
}

/// [`Faults`] with durations parsed and rates checked.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub call_unavailable: f64,
    pub call_refused: f64,
    pub call_drop: f64,
    pub call_error: f64,
    pub call_reworded: f64,
    pub status_error: f64,
    pub status_garbage: f64,
    pub slow: Option<(std::time::Duration, f64)>,
    pub outages: Vec<(std::time::Duration, std::time::Duration)>,
    pub restart_after: Option<std::time::Duration>,
}

impl Faults {
    pub fn plan(&self) -> Result<FaultPlan, String> {
        let rate = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("faults.{name}: {v} is not a rate between 0 and 1"))
            }
        };
        let dur = |name: &str, v: &str| {
            crate::types::parse_duration(v).map_err(|e| format!("faults.{name}: {e}"))
        };
        Ok(FaultPlan {
            call_unavailable: rate("call-unavailable", self.call_unavailable)?,
            call_refused: rate("call-refused", self.call_refused)?,
            call_drop: rate("call-drop", self.call_drop)?,
            call_error: rate("call-error", self.call_error)?,
            call_reworded: rate("call-reworded", self.call_reworded)?,
            status_error: rate("status-error", self.status_error)?,
            status_garbage: rate("status-garbage", self.status_garbage)?,
            slow: match &self.slow {
                None => None,
                Some(s) => Some((
                    dur("slow", s)?,
                    rate("slow-rate", self.slow_rate.unwrap_or(1.0))?,
                )),
            },
            outages: self
                .outages
                .iter()
                .map(|o| {
                    Ok((
                        dur("outages.after", &o.after)?,
                        dur("outages.lasting", &o.lasting)?,
                    ))
                })
                .collect::<Result<_, String>>()?,
            restart_after: self
                .restart_after
                .as_deref()
                .map(|s| dur("restart-after", s))
                .transpose()?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Patterns on the `phoneno` parameter as received.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Patterns on other form fields as received (`fields = { attendee = "Dr *" }`): a rule with numbers or
    /// fields plays for a request that matches all of them, so rehearsals can check what calls carry.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub weight: u32,
    pub steps: Vec<Step>,
    /// What later call requests for the same number do: the second request plays `recalls[0]`, the third
    /// `recalls[1]`, and so on (the last one repeats). Without it every request plays `steps`.
    #[serde(default)]
    pub recalls: Vec<Vec<Step>>,
    #[serde(default)]
    pub reply: Reply,
    /// How the first status polls of the call are answered, in order, before the normal answers: `missing`
    /// (`ERROR: no such call record`, while the record is there: a gateway restarting), `error` (HTTP 500),
    /// `garbage` (a page that is not a status reply) or `normal`.
    #[serde(default)]
    pub polls: Vec<PollAnswer>,
    /// Answer status polls with records of eight fields instead of ten, as a gateway release with another
    /// record layout might: the status is readable, the responses are not certain.
    #[serde(default, rename = "short-records")]
    pub short_records: bool,
}

/// A scripted answer to one status poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollAnswer {
    Missing,
    Error,
    Garbage,
    Normal,
}

fn one() -> u32 {
    1
}

/// How a call request is answered once its call is scheduled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    #[default]
    Normal,
    /// Drop the connection without an answer.
    Drop,
    /// HTTP 500 (the gateway failed after creating the record).
    Error,
    /// HTTP 502, as a proxy in front of the gateway answers when it loses the gateway's answer.
    BadGateway,
    /// HTTP 200 with a page that does not carry `[ReqId=…]`.
    Reworded,
    /// The id of the previous call request, which this call's record replaces (a gateway whose counter went
    /// back after a restart).
    ReuseId,
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
    /// Call requests seen per number, for rules whose later requests play other steps.
    requests: std::collections::HashMap<String, usize>,
}

/// What a call will do.
#[derive(Debug, Clone)]
pub struct Script {
    pub attempts: Vec<Attempt>,
    pub reply: Reply,
    pub polls: Vec<PollAnswer>,
    pub short_records: bool,
}

impl Picker {
    pub fn new(scenario: Scenario) -> Picker {
        let rng = StdRng::seed_from_u64(scenario.seed);
        Picker {
            scenario,
            rng,
            requests: Default::default(),
        }
    }

    /// The script for a call request to `phoneno` carrying the form fields `params`.
    pub fn pick(&mut self, phoneno: &str, params: &BTreeMap<String, String>) -> Script {
        let nth = {
            let n = self.requests.entry(phoneno.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let by_number = self
            .scenario
            .rules
            .iter()
            .filter(|r| !r.numbers.is_empty() || !r.fields.is_empty())
            .find(|r| {
                (r.numbers.is_empty() || r.numbers.iter().any(|p| glob(p, phoneno)))
                    && r.fields.iter().all(|(name, pattern)| {
                        params
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .is_some_and(|(_, v)| glob(pattern, v))
                    })
            });
        let rule = by_number.or_else(|| {
            let weighted: Vec<&Rule> = self
                .scenario
                .rules
                .iter()
                .filter(|r| r.numbers.is_empty() && r.fields.is_empty() && r.weight > 0)
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
            Some(r) => {
                let steps = match nth {
                    1 => &r.steps,
                    n => r
                        .recalls
                        .get(n - 2)
                        .or(r.recalls.last())
                        .unwrap_or(&r.steps),
                };
                Script {
                    attempts: steps.iter().map(Step::resolve).collect(),
                    reply: r.reply,
                    polls: r.polls.clone(),
                    short_records: r.short_records,
                }
            }
            None => Script {
                attempts: vec![Step::Word("made".into()).resolve()],
                reply: Reply::Normal,
                polls: Vec::new(),
                short_records: false,
            },
        }
    }
}

/// Loads a scenario file.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
    let s: Scenario = toml::from_str(&text).map_err(|e| {
        format!(
            "scenario {}{}: {}",
            path.display(),
            crate::types::toml_place(&text, e.span()),
            e.message().trim()
        )
    })?;
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
mod tests;
