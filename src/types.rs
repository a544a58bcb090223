//! Value types shared by the settings, the list reader, the engine and the simulator: rates, durations, the
//! number format, secrets. A leaf: nothing here imports from the rest of the crate, so any module can use it
//! without pulling in the settings (which is what tied config, contacts and the simulator in a circle).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A pace: `count` events per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Limited {
        count: u32,
        per: Duration,
    },
    /// No pacing at all (benchmarks, or a gateway that paces itself).
    Unlimited,
}

impl Rate {
    /// Time between events, `None` when unlimited.
    pub fn interval(self) -> Option<Duration> {
        match self {
            Rate::Limited { count, per } => Some(per / count),
            Rate::Unlimited => None,
        }
    }

    pub fn per_second(self) -> Option<f64> {
        match self {
            Rate::Limited { count, per } => Some(f64::from(count) / per.as_secs_f64()),
            Rate::Unlimited => None,
        }
    }
}

impl fmt::Display for Rate {
    /// As an operator writes it: `10/s`, `90/m`, `unlimited`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::Limited { count, per } => {
                let unit = match per.as_secs() {
                    1 => "s",
                    60 => "m",
                    3600 => "h",
                    _ => return write!(f, "{count}/{}", Dur(*per)),
                };
                write!(f, "{count}/{unit}")
            }
        }
    }
}

impl FromStr for Rate {
    type Err = String;
    /// `5/s`, `90/m`, `100/h`, or `unlimited`.
    fn from_str(s: &str) -> Result<Rate, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::Unlimited);
        }
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a rate; write it like 5/s or 90/m"))?;
        let count: i64 = n
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a rate; write it like 5/s or 90/m"))?;
        if count <= 0 {
            return Err(format!("{s:?}: the rate must be above zero"));
        }
        let count = u32::try_from(count).map_err(|_| format!("{s:?}: the rate is too large"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("{s:?}: unknown unit {other:?}; use /s, /m or /h")),
        };
        Ok(Rate::Limited { count, per })
    }
}

/// Parses `200ms`, `5s`, `2m`, `1h` (decimals allowed: `1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} has no unit; write it like 200ms, 5s or 2m"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write it like 200ms, 5s or 2m"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

/// A duration as an operator writes it (`1m30s`, `200ms`), for logs and messages. `Debug` of a `Duration`
/// (`90s`, `1.5s`) is close but not what anyone types.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if ms < 1000 {
            return write!(f, "{ms}ms");
        }
        let s = d.as_secs();
        let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
        let rest = d.subsec_millis();
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if rest > 0 && h == 0 && m == 0 {
            // 1.5s reads better than 1s500ms, and only short durations carry milliseconds worth showing.
            let tenths = format!("{:.3}", f64::from(rest) / 1000.0);
            return write!(
                f,
                "{s}{}s",
                tenths.trim_start_matches('0').trim_end_matches('0')
            );
        }
        if s > 0 || (h == 0 && m == 0) {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `90s` → `1m30s`, for messages.
pub fn humanize(d: Duration) -> String {
    Dur(d).to_string()
}

/// How the dialled number is written in the call request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberFormat {
    /// `+14155550123`: unambiguous across trunks and countries; the default.
    E164,
    /// `4155550123`, `02079460002`: the national form as dialled inside the country, digits only.
    National,
    /// `14155550123`: E.164 without the plus, for dial plans that reject `+`.
    Digits,
}

impl FromStr for NumberFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "e164" | "e.164" => Ok(NumberFormat::E164),
            "national" => Ok(NumberFormat::National),
            "digits" => Ok(NumberFormat::Digits),
            _ => Err(format!(
                "{s:?} is not a number format; use e164, national or digits"
            )),
        }
    }
}

/// A password: never printed, not even by `{:?}`.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// ` line 3 (lines = "four")`: where in a TOML text an error is, for a message an operator can act on.
pub fn toml_place(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let shown: String = line.chars().take(60).collect();
    if shown.is_empty() {
        format!(" line {line_no}")
    } else {
        format!(" line {line_no} ({shown})")
    }
}

/// Milliseconds since the Unix epoch, as the journal stores instants.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            "5/s".parse::<Rate>(),
            Ok(Rate::Limited {
                count: 5,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            "90/m".parse::<Rate>().map(|r| r.interval()),
            Ok(Some(Duration::from_secs(60) / 90))
        );
        assert_eq!("unlimited".parse::<Rate>(), Ok(Rate::Unlimited));
        for bad in ["0/s", "-1/s", "5", "5/d", "x/s", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        for text in ["10/s", "90/m", "100/h", "unlimited"] {
            assert_eq!(text.parse::<Rate>().map(|r| r.to_string()), Ok(text.into()));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["5", "s", "5x", "-1s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_as_written() {
        let cases = [
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(15 * 60), "15m"),
            (Duration::from_millis(200), "200ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(3660), "1h1m"),
            (Duration::ZERO, "0ms"),
        ];
        for (d, text) in cases {
            assert_eq!(humanize(d), text, "{d:?}");
        }
        // A single-unit form parses back to the same duration.
        for text in ["15m", "200ms", "1.5s", "2s", "1h", "0ms"] {
            assert_eq!(parse_duration(text).map(humanize), Ok(text.to_string()));
        }
    }
}
