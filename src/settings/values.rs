//! Reading one setting from a flag or the campaign file, remembering which, so a message names it the way
//! the operator wrote it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::{Rate, parse_duration};

/// Turns a path from the campaign file into one usable from the current directory.
pub(super) fn relative_to(base: Option<&Path>, p: PathBuf) -> PathBuf {
    match base {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    }
}

/// A value from a flag or from the file, remembering which, so errors can name it the way the user wrote it.
pub(super) fn pick<T>(flag: Option<T>, file: Option<T>, key: &str) -> Option<(T, String)> {
    match (flag, file) {
        (Some(v), _) => Some((v, format!("--{key}"))),
        (None, Some(v)) => Some((v, format!("campaign key {key}"))),
        (None, None) => None,
    }
}

/// How a setting was given, for a message about it: the flag, the campaign key, or its default.
pub(super) fn named(flag: bool, file: bool, key: &str) -> String {
    match (flag, file) {
        (true, _) => format!("--{key}"),
        (false, true) => format!("campaign key {key}"),
        (false, false) => key.to_string(),
    }
}

pub(super) fn positive_u32(v: i64, what: &str) -> Result<u32> {
    if v <= 0 {
        return Err(Error::Usage(format!("{what}: must be at least 1, not {v}")));
    }
    u32::try_from(v).map_err(|_| Error::Usage(format!("{what}: {v} is too large")))
}

pub(super) fn int(text: &str, what: &str) -> Result<i64> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| Error::Usage(format!("{what}: {text:?} is not a whole number")))
}

pub(super) fn duration_of(v: Option<(String, String)>, default: Duration) -> Result<Duration> {
    match v {
        None => Ok(default),
        Some((text, what)) => parse_duration(&text).map_err(|e| Error::setting(&what, e)),
    }
}

pub(super) fn rate_of(v: Option<(String, String)>, default: Rate) -> Result<Rate> {
    match v {
        None => Ok(default),
        Some((text, what)) => text.parse().map_err(|e| Error::setting(&what, e)),
    }
}
