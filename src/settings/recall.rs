//! The recall policy: which outcomes are called again, when, and how often.

use std::time::Duration;

use super::values::{int, positive_u32};
use crate::error::{Error, Result};
use crate::rules::answers::Answers;
use crate::types::parse_duration;

/// The recall policy: a person who did not answer (or did not confirm) is called again later, a bounded
/// number of times, each recall a new call request as safe as the first.
#[derive(Debug, Clone, PartialEq)]
pub struct Recall {
    /// Recall calls the gateway gave up on (busy, no answer, too late).
    pub on_failed: bool,
    /// Recall calls written off as unresolved.
    pub on_unresolved: bool,
    /// Recall calls made with no IVR response collected (an answering machine, a hang-up).
    pub on_no_response: bool,
    /// Recall made calls whose responses contain none of these answers (`Confirm=1`).
    pub unless: Answers,
    /// The least time from the end of one call to the next request.
    pub after: Duration,
    /// Call requests per contact in all, the first included.
    pub max_attempts: u32,
}

/// The recall policy from flags or the file, validated.
pub(super) fn recall_of(
    on: Option<(Vec<String>, String)>,
    unless: Option<(Vec<String>, String)>,
    after: Option<(String, String)>,
    max: Option<(String, String)>,
) -> Result<Option<Recall>> {
    // `recall-on = []` says nothing: taken as not given, so `max-attempts` without an outcome is refused
    // alike either way.
    let on = on.filter(|(v, _)| v.iter().any(|w| !w.trim().is_empty()));
    let unless = unless.filter(|(v, _)| v.iter().any(|w| !w.trim().is_empty()));
    if on.is_none() && unless.is_none() {
        if let Some((_, what)) = after.or(max) {
            return Err(Error::Usage(format!(
                "{what} needs --recall-on or --recall-unless (which outcomes are called again)"
            )));
        }
        return Ok(None);
    }
    let mut policy = Recall {
        on_failed: false,
        on_unresolved: false,
        on_no_response: false,
        unless: Answers::default(),
        after: Duration::from_secs(3600),
        max_attempts: 3,
    };
    if let Some((words, what)) = on {
        for w in words {
            match w.to_ascii_lowercase().as_str() {
                "failed" => policy.on_failed = true,
                "unresolved" => policy.on_unresolved = true,
                "no-response" | "no_response" => policy.on_no_response = true,
                other => {
                    return Err(Error::Usage(format!(
                        "{what}: {other:?} is not an outcome to recall; use failed, unresolved or no-response"
                    )));
                }
            }
        }
    }
    if let Some((answers, what)) = unless {
        policy.unless = Answers::read(&answers, &what).map_err(Error::Usage)?;
    }
    if let Some((t, what)) = after {
        policy.after = parse_duration(&t).map_err(|e| Error::setting(&what, e))?;
    }
    if let Some((t, what)) = max {
        policy.max_attempts = positive_u32(int(&t, &what)?, &what)?;
    }
    Ok(Some(policy))
}
