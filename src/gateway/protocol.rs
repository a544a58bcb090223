//! The Voicent Gateway wire protocol as pure functions: request forms in, reply bodies out.
//!
//! Nothing here does I/O, so every reply shape in the protocol reference (CRLF and LF, blank lines around JSP
//! output, several records, 0-based months) is unit- and property-tested directly.
//!
//! Where the official SDKs go wrong, this module does not:
//! - the **last** record of a status reply decides the state (the SDKs substring-match the whole retry history,
//!   so a `made` anywhere, even inside an IVR response, wins);
//! - responses come from the last record too (the Java SDK reads the first record, losing a retry→made answer);
//! - `[]`, `ERROR: no such call record` and an unparsable body are different things, never all `""`;
//! - unknown status words are reported with their raw text instead of being mistaken for "still going".

use std::fmt;

/// Path of the call-request handler.
pub const CALL_PATH: &str = "/ocall/callreqHandler.jsp";
/// Path of the status handler.
pub const STATUS_PATH: &str = "/ocall/callstatusHandler.jsp";
/// Path of the remove handler.
pub const REMOVE_PATH: &str = "/ocall/callremoveHandler.jsp";

/// Key the gateway's SDKs use for a response item that has no `name=`.
pub const BARE_RESPONSE_KEY: &str = "__response___";

/// Fields per attempt record; every field, including the last, is terminated by `^`.
const FIELDS_PER_RECORD: usize = 10;

/// An IVR call request (`callIvr` in the SDKs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// Label stored with the gateway record; we make it unique per campaign and row so a record can be traced.
    pub info: String,
    /// The number exactly as the gateway should dial it.
    pub phoneno: String,
    /// Minutes after which the gateway stops attempting the call.
    pub firstocc: u32,
    /// Name of the IVR application deployed on the gateway.
    pub startapp: String,
    /// More form fields (caller ID, detection, the contact's own data), after the SDKs' own.
    pub extra: Vec<(String, String)>,
}

impl CallRequest {
    /// The form fields, in the order the SDKs send them, then the extra ones. `selfdelete=0` keeps the record
    /// (and its IVR responses) readable after the call; the runner removes it itself once the result is
    /// durable. Values are form-encoded as UTF-8 when sent.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut form = vec![
            ("info".to_string(), self.info.clone()),
            ("phoneno".to_string(), self.phoneno.clone()),
            ("firstocc".to_string(), self.firstocc.to_string()),
            ("selfdelete".to_string(), "0".to_string()),
            ("startapp".to_string(), self.startapp.clone()),
        ];
        form.extend(self.extra.iter().cloned());
        form
    }
}

/// Reads the request id from a call-request reply page.
///
/// Only `[ReqId=…]` is contractual; the rest of the page is free-form HTML. The id is kept as an opaque string
/// (13-digit epoch milliseconds in captures, 9 digits in the docs). Returns `None` when the page holds no
/// well-formed id, which means the gateway did not schedule the call.
pub fn parse_call_reply(body: &str) -> Option<String> {
    const MARK: &str = "[ReqId=";
    let start = body.find(MARK)? + MARK.len();
    let rest = &body[start..];
    // Non-greedy: stop at the first `]` (PHP's greedy regex over-captures when a later `]` shares the line).
    let end = rest.find(']')?;
    let id = rest[..end].trim();
    let well_formed = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    well_formed.then(|| id.to_string())
}

/// A short, single-line excerpt of a reply body for `detail` and logs (gateways answer with whole HTML pages).
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 160;
    let text = strip_tags(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

fn strip_tags(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// A status reply, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusReply {
    /// `[]`: no attempt has been recorded yet (queued or ringing).
    NoAttemptYet,
    /// One record per dial attempt, oldest first. Never empty.
    Attempts(Vec<Attempt>),
    /// `ERROR: no such call record: <id>`: the id is unknown or its record was removed.
    NoSuchRecord,
}

/// The body was not any status reply shape (an HTML error page, a truncated body, a proxy's page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Why the body was rejected.
    pub reason: String,
    /// A short excerpt of the body, for logs.
    pub excerpt: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.reason, self.excerpt)
    }
}

impl std::error::Error for Malformed {}

/// One dial attempt as the gateway records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The status word as sent (trimmed): `made`, `failed`, `retry`, `pending` or something new.
    pub status: String,
    /// Time of this attempt, gateway local time. `None` when the field did not parse.
    pub attempted: Option<GatewayTime>,
    /// Time the request was created, gateway local time.
    pub created: Option<GatewayTime>,
    /// Free-form notes (`Call succeeded`, `No answer. Try in 1 minute`), trimmed.
    pub notes: String,
    /// IVR responses collected on this attempt, in field order, later duplicates replacing earlier ones.
    pub responses: Responses,
    /// Set when the record was not the documented ten fields but could still be read: what is uncertain.
    pub irregular: Option<String>,
}

/// What an attempt's status word means for polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptState {
    /// Reached a person or an answering machine. Final.
    Made,
    /// Gave up. Final.
    Failed,
    /// The gateway will dial again by itself. Not final; never send a second call request.
    Retry,
    /// Still queued.
    Pending,
    /// A word this client does not know. Not final; reported with its raw text.
    Other(String),
}

impl AttemptState {
    /// Whether the gateway is done with the call.
    pub fn is_final(&self) -> bool {
        matches!(self, AttemptState::Made | AttemptState::Failed)
    }
}

impl Attempt {
    /// The state this attempt's status word stands for.
    pub fn state(&self) -> AttemptState {
        match self.status.to_ascii_lowercase().as_str() {
            "made" => AttemptState::Made,
            "failed" => AttemptState::Failed,
            "retry" => AttemptState::Retry,
            "pending" => AttemptState::Pending,
            _ => AttemptState::Other(self.status.clone()),
        }
    }
}

/// A gateway timestamp: `YYYY M D H m`, local time, month 0-based on the wire and 1-based here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayTime {
    pub year: i16,
    /// 1..=12 (the wire's 0-based month plus one).
    pub month: i8,
    pub day: i8,
    pub hour: i8,
    pub minute: i8,
}

impl GatewayTime {
    /// Parses the wire form, with its 0-based month. Tolerates runs of whitespace between the numbers.
    pub fn parse(field: &str) -> Option<GatewayTime> {
        let mut it = field.split_whitespace().map(|p| p.parse::<i32>().ok());
        let (year, month0, day, hour, minute) = (
            it.next()??,
            it.next()??,
            it.next()??,
            it.next()??,
            it.next()??,
        );
        if it.next().is_some() {
            return None;
        }
        let t = GatewayTime {
            year: i16::try_from(year).ok()?,
            month: i8::try_from(month0 + 1).ok()?,
            day: i8::try_from(day).ok()?,
            hour: i8::try_from(hour).ok()?,
            minute: i8::try_from(minute).ok()?,
        };
        jiff::civil::DateTime::new(t.year, t.month, t.day, t.hour, t.minute, 0, 0).ok()?;
        Some(t)
    }

    /// The wire form (0-based month), as the gateway writes it.
    pub fn to_wire(self) -> String {
        format!(
            "{} {} {} {} {}",
            self.year,
            self.month - 1,
            self.day,
            self.hour,
            self.minute
        )
    }
}

/// IVR responses: ordered `name=value` pairs with unique names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Responses(Vec<(String, String)>);

impl Responses {
    /// Parses field 8 of a record: `name=value|name=value`, split at the first `=`, names and values trimmed.
    /// An item without `=` goes under [`BARE_RESPONSE_KEY`], as in the SDKs. A later duplicate name replaces
    /// the earlier value in place. Empty items carry no answer and are skipped (the Java SDK stores them as an
    /// empty bare response, which only overwrites a real bare answer with nothing).
    pub fn parse(field: &str) -> Responses {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for item in field.split('|') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), v.trim()),
                None => (BARE_RESPONSE_KEY, item),
            };
            match pairs.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.to_string(),
                None => pairs.push((name.to_string(), value.to_string())),
            }
        }
        Responses(pairs)
    }

    /// The value under a name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first response whose name matches `name` in any letter case.
    pub fn get_ignore_case(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl fmt::Display for Responses {
    /// `name=value|name=value`, the form the results file carries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            write!(f, "{n}={v}")?;
        }
        Ok(())
    }
}

/// Classifies a status reply body.
///
/// Shapes: `[]`; `[` + records + line break + `]`, each record ten `^`-terminated fields with nothing between
/// records; `ERROR: no such call record: <id>`. Leading and trailing whitespace (JSP output carries blank
/// lines; CRLF or LF) is ignored, as is whitespace between records. Anything else is [`Malformed`].
pub fn parse_status_reply(body: &str) -> Result<StatusReply, Malformed> {
    // A byte order mark some servlet filters put in front of the page is not part of the reply.
    let text = body.trim().trim_start_matches('\u{feff}').trim_start();
    let malformed = |reason: &str| Malformed {
        reason: reason.to_string(),
        excerpt: excerpt(body),
    };
    if let Some(rest) = text.strip_prefix("ERROR:") {
        return if rest.trim_start().starts_with("no such call record") {
            Ok(StatusReply::NoSuchRecord)
        } else {
            Err(malformed("gateway error reply"))
        };
    }
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| malformed("not a status reply"))?
        .trim();
    if inner.is_empty() {
        return Ok(StatusReply::NoAttemptYet);
    }
    let body_fields = inner.strip_suffix('^').unwrap_or(inner);
    let fields: Vec<&str> = body_fields.split('^').collect();
    if inner.ends_with('^') && fields.len().is_multiple_of(FIELDS_PER_RECORD) {
        let attempts: Vec<Attempt> = fields
            .chunks(FIELDS_PER_RECORD)
            .map(|f| record(f, None))
            .collect();
        // Ten fields a record only when each chunk starts like one: a response value holding ten `^` would
        // otherwise shift every later record, and a fragment of it be read as a status word.
        let starts_like_a_record = |f: &[&str]| {
            let word = f[2].trim();
            !word.is_empty()
                && word.chars().all(|c| c.is_ascii_alphabetic())
                && (GatewayTime::parse(f[3]).is_some() || GatewayTime::parse(f[4]).is_some())
        };
        if fields.chunks(FIELDS_PER_RECORD).all(starts_like_a_record) {
            return Ok(StatusReply::Attempts(attempts));
        }
    }
    irregular(&fields).ok_or_else(|| {
        malformed(&format!(
            "{} fields, not records of {FIELDS_PER_RECORD}",
            fields.len()
        ))
    })
}

/// One record from its fields (ten, or what an irregular record has).
fn record(f: &[&str], irregular: Option<String>) -> Attempt {
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    // A `^` inside a response value splits it: the responses are everything from the 9th field to the last
    // one that would have been empty.
    let responses = if f.len() > FIELDS_PER_RECORD {
        f[8..f.len() - 1].join("^")
    } else {
        get(8).to_string()
    };
    Attempt {
        status: get(2).trim().to_string(),
        attempted: GatewayTime::parse(get(3)),
        created: GatewayTime::parse(get(4)),
        notes: get(5).trim().to_string(),
        responses: Responses::parse(&responses),
        irregular,
    }
}

/// Reads records that are not ten `^`-terminated fields each, where that can be done unambiguously: each
/// record is found by what starts it (a status word, then two gateway timestamps), so the status and times of
/// every record are certain, and what is not (the responses of a record with more or fewer fields) is said.
/// `None` when no record can be found this way.
fn irregular(fields: &[&str]) -> Option<StatusReply> {
    let starts_at = |i: usize| {
        let word = fields.get(i + 2).map(|w| w.trim()).unwrap_or("");
        !word.is_empty()
            && word.chars().all(|c| c.is_ascii_alphabetic())
            && fields
                .get(i + 3)
                .and_then(|t| GatewayTime::parse(t))
                .is_some()
            && fields
                .get(i + 4)
                .and_then(|t| GatewayTime::parse(t))
                .is_some()
    };
    let starts: Vec<usize> = (0..fields.len()).filter(|i| starts_at(*i)).collect();
    if starts.first() != Some(&0) {
        return None;
    }
    let mut attempts = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(fields.len());
        let f = &fields[start..end];
        let note = (f.len() != FIELDS_PER_RECORD).then(|| {
            format!(
                "the gateway's record had {} fields, not {FIELDS_PER_RECORD}: its status is certain, its responses may not be",
                f.len()
            )
        });
        attempts.push(record(f, note));
    }
    Some(StatusReply::Attempts(attempts))
}

/// A remove reply, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveReply {
    /// `[removed]`.
    Removed,
    /// `ERROR: no such call record`: already gone, which is what we wanted.
    NoSuchRecord,
    /// Anything else, excerpted.
    Unexpected(String),
}

/// Classifies a remove reply body.
pub fn parse_remove_reply(body: &str) -> RemoveReply {
    let text = body.trim().trim_start_matches('\u{feff}').trim_start();
    if text == "[removed]" {
        RemoveReply::Removed
    } else if text
        .strip_prefix("ERROR:")
        .is_some_and(|r| r.trim_start().starts_with("no such call record"))
    {
        RemoveReply::NoSuchRecord
    } else {
        RemoveReply::Unexpected(excerpt(body))
    }
}

/// Formats one attempt record the way the gateway does (used by the simulator, and by tests as an oracle).
pub fn format_record(
    status: &str,
    attempted: GatewayTime,
    created: GatewayTime,
    notes: &str,
    responses: &str,
) -> String {
    format!(
        "0^null^{status}^{}^{}^{notes}^^^{responses}^^",
        attempted.to_wire(),
        created.to_wire()
    )
}

#[cfg(test)]
mod tests;
