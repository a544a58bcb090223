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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attempts(body: &str) -> Vec<Attempt> {
        match parse_status_reply(body) {
            Ok(StatusReply::Attempts(a)) => a,
            other => panic!("expected attempts, got {other:?}"),
        }
    }

    #[test]
    fn call_reply_captured_page() {
        let body = "<html><body>\r\nYour call is scheduled for Mon Apr 21 11:51:18 BST 2008. [ReqId=1208775078314]\r\n</body></html>";
        assert_eq!(parse_call_reply(body).as_deref(), Some("1208775078314"));
    }

    #[test]
    fn call_reply_doc_example_and_greedy_trap() {
        assert_eq!(
            parse_call_reply("[ReqId=135798468] and [other]").as_deref(),
            Some("135798468")
        );
    }

    #[test]
    fn call_reply_without_id_is_none() {
        assert_eq!(parse_call_reply("ERROR: missing phoneno"), None);
        assert_eq!(parse_call_reply("[ReqId=]"), None);
        assert_eq!(parse_call_reply("[ReqId=123"), None);
        assert_eq!(parse_call_reply("[ReqId=12 3]"), None);
        assert_eq!(parse_call_reply(""), None);
    }

    #[test]
    fn status_empty_variants() {
        for body in [
            "[]",
            "[]\r\n",
            "\r\n\r\n[]\r\n",
            "  [ ]  ",
            "[\n]",
            "\n[]\n",
        ] {
            assert_eq!(
                parse_status_reply(body),
                Ok(StatusReply::NoAttemptYet),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_reply_is_ignored() {
        assert_eq!(
            parse_status_reply("\u{feff}[]"),
            Ok(StatusReply::NoAttemptYet)
        );
        assert_eq!(
            parse_remove_reply("\u{feff}[removed]\r\n"),
            RemoveReply::Removed
        );
    }

    #[test]
    fn status_no_such_record() {
        for body in [
            "ERROR: no such call record: 1208431448217",
            "\r\nERROR: no such call record: 1\r\n",
        ] {
            assert_eq!(parse_status_reply(body), Ok(StatusReply::NoSuchRecord));
        }
        assert!(parse_status_reply("ERROR: database locked").is_err());
    }

    #[test]
    fn status_captured_made_with_lf_and_crlf() {
        for eol in ["\n", "\r\n"] {
            let body = format!(
                "[0^null^made^2008 3 17 12 26^2008 3 17 12 25^Message left on answering machine^^^^^{eol}]"
            );
            let a = attempts(&body);
            assert_eq!(a.len(), 1);
            assert_eq!(a[0].state(), AttemptState::Made);
            assert_eq!(a[0].notes, "Message left on answering machine");
            // Month is 0-based on the wire: 3 means April.
            assert_eq!(
                a[0].attempted,
                Some(GatewayTime {
                    year: 2008,
                    month: 4,
                    day: 17,
                    hour: 12,
                    minute: 26
                })
            );
            assert!(a[0].responses.is_empty());
        }
    }

    #[test]
    fn status_retry_history_last_record_decides() {
        let body = "[0^null^retry^2008 3 21 13 2^2008 3 21 13 2^No answer. Try in 1 minute ^^^^^0^null^made^2008 3 21 13 3^2008 3 21 13 2^Call succeeded^^^^^\r\n]";
        let a = attempts(body);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].state(), AttemptState::Retry);
        assert_eq!(a[0].notes, "No answer. Try in 1 minute");
        assert_eq!(a[1].state(), AttemptState::Made);
        assert_eq!(a[0].created, a[1].created);
    }

    #[test]
    fn status_all_retries_is_not_final() {
        let rec = "0^null^retry^2008 3 18 6 18^2008 3 18 6 18^No answer. Try in 1 minute ^^^^^";
        let body = format!("[{rec}{rec}{rec}{rec}\n]");
        let a = attempts(&body);
        assert_eq!(a.len(), 4);
        assert!(!a.last().map(|x| x.state().is_final()).unwrap_or(true));
    }

    #[test]
    fn status_responses_from_the_last_record() {
        let body = "[0^null^retry^2008 3 17 12 25^2008 3 17 12 25^No answer. Try in 1 minute ^^^^^0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^7|Q2=3^^\n]";
        let a = attempts(body);
        let last = &a[1];
        assert_eq!(last.responses.get(BARE_RESPONSE_KEY), Some("7"));
        assert_eq!(last.responses.get("Q2"), Some("3"));
        assert_eq!(last.responses.to_string(), "__response___=7|Q2=3");
    }

    #[test]
    fn made_inside_a_response_value_is_not_a_status() {
        // A bare IVR answer `made` puts `^made^` in the body; the SDKs' substring search calls that "Call Made".
        let a = attempts("[0^null^retry^2008 3 17 12 25^2008 3 17 12 25^No answer^^^made^^\n]");
        assert_eq!(a[0].state(), AttemptState::Retry);
        assert_eq!(a[0].responses.get(BARE_RESPONSE_KEY), Some("made"));
    }

    #[test]
    fn responses_rules() {
        let r = Responses::parse(" AttendMeeting = 1 |Confirm=2|Confirm=3||bare|x=a=b");
        assert_eq!(r.get("AttendMeeting"), Some("1"));
        assert_eq!(r.get("Confirm"), Some("3"));
        assert_eq!(r.get(BARE_RESPONSE_KEY), Some("bare"));
        assert_eq!(r.get("x"), Some("a=b"));
        assert_eq!(
            r.to_string(),
            "AttendMeeting=1|Confirm=3|__response___=bare|x=a=b"
        );
        assert!(Responses::parse("").is_empty());
        assert!(Responses::parse("  ").is_empty());
    }

    #[test]
    fn unknown_status_word_is_not_final() {
        let a = attempts("[0^null^waitagent^2008 3 17 12 26^2008 3 17 12 25^^^^^^]");
        assert_eq!(a[0].state(), AttemptState::Other("waitagent".into()));
        assert!(!a[0].state().is_final());
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            "<html><body>HTTP Status 500 - Internal Server Error</body></html>",
            "[0^null^made^2008 3 17 12 26^",
            "[0^null^^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^^^\n]",
            "[garbage^0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^^^\n]",
            "",
            "[removed]",
        ] {
            assert!(parse_status_reply(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn irregular_records_are_read_where_their_status_is_certain() {
        // Nine fields (one `^` short), and a `^` inside a response value (eleven).
        let a = attempts("[0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^^\n]");
        assert_eq!(a[0].state(), AttemptState::Made);
        assert!(
            a[0].irregular
                .as_deref()
                .is_some_and(|n| n.contains("9 fields"))
        );
        let a = attempts(
            "[0^null^retry^2008 3 18 6 18^2008 3 18 6 18^No answer^^^^^0^null^made^2008 3 18 6 19^2008 3 18 6 18^Call succeeded^^^Q=1^2^^\n]",
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].irregular, None);
        assert_eq!(a[1].state(), AttemptState::Made);
        assert_eq!(a[1].responses.get("Q"), Some("1^2"));
        assert!(
            a[1].irregular
                .as_deref()
                .is_some_and(|n| n.contains("11 fields"))
        );
        // Regular records say nothing.
        let a = attempts("[0^null^made^2008 3 17 12 24^2008 3 17 12 24^Call succeeded^^^^^\n]");
        assert_eq!(a[0].irregular, None);
        // Ten `^` inside a response value: twenty fields, but the second ten are not a record.
        let a = attempts(
            "[0^null^made^2008 3 17 12 26^2008 3 17 12 25^Call succeeded^^^Q=a^b^c^d^e^f^g^h^i^j^k^^\n]",
        );
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].state(), AttemptState::Made);
        assert!(a[0].irregular.is_some());
    }

    #[test]
    fn gateway_time_rejects_nonsense() {
        assert_eq!(GatewayTime::parse("2008 12 1 1 1"), None); // month index 12 is the 13th month
        assert_eq!(GatewayTime::parse("2008 1 30 1 1"), None); // 30 February
        assert_eq!(GatewayTime::parse("2008 3 17 12"), None);
        assert_eq!(GatewayTime::parse("2008 3 17 12 1 5"), None);
        assert!(GatewayTime::parse("2008  0  1  0  0").is_some());
    }

    #[test]
    fn remove_replies() {
        assert_eq!(parse_remove_reply("[removed]\r\n"), RemoveReply::Removed);
        assert_eq!(
            parse_remove_reply("ERROR: no such call record: 5"),
            RemoveReply::NoSuchRecord
        );
        assert!(matches!(
            parse_remove_reply("<html>500</html>"),
            RemoveReply::Unexpected(_)
        ));
    }

    fn field() -> impl Strategy<Value = String> {
        "[A-Za-z0-9 .,:;!?'-]{0,24}"
    }

    fn time() -> impl Strategy<Value = GatewayTime> {
        (1990i16..2100, 1i8..=12, 1i8..=28, 0i8..24, 0i8..60).prop_map(
            |(year, month, day, hour, minute)| GatewayTime {
                year,
                month,
                day,
                hour,
                minute,
            },
        )
    }

    fn record() -> impl Strategy<Value = (String, GatewayTime, String, Vec<(String, String)>)> {
        (
            prop_oneof![
                Just("made".to_string()),
                Just("failed".to_string()),
                Just("retry".to_string()),
                "[a-z]{1,10}"
            ],
            time(),
            field(),
            proptest::collection::vec(("[A-Za-z][A-Za-z0-9]{0,8}", "[0-9*#]{0,4}"), 0..4),
        )
    }

    proptest! {
        #[test]
        fn formatted_histories_round_trip(
            recs in proptest::collection::vec(record(), 1..6),
            lead in "[\r\n ]{0,4}",
            eol in prop_oneof![Just("\n"), Just("\r\n"), Just("")],
        ) {
            let created = recs[0].1;
            let mut body = format!("{lead}[");
            for (status, t, notes, resp) in &recs {
                let r = resp.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("|");
                body.push_str(&format_record(status, *t, created, notes, &r));
            }
            body.push_str(eol);
            body.push(']');
            body.push_str(&lead);
            let parsed = attempts(&body);
            prop_assert_eq!(parsed.len(), recs.len());
            for (a, (status, t, notes, resp)) in parsed.iter().zip(&recs) {
                prop_assert_eq!(&a.status, status);
                prop_assert_eq!(a.attempted, Some(*t));
                prop_assert_eq!(a.created, Some(created));
                prop_assert_eq!(&a.notes, notes.trim());
                for (k, v) in resp {
                    // Last duplicate wins.
                    let want = resp.iter().rev().find(|(k2, _)| k2 == k).map(|(_, v2)| v2.as_str());
                    prop_assert_eq!(a.responses.get(k), want);
                    let _ = v;
                }
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bodies(body in "\\PC{0,200}") {
            let _ = parse_status_reply(&body);
            let _ = parse_call_reply(&body);
            let _ = parse_remove_reply(&body);
            let _ = excerpt(&body);
        }

        #[test]
        fn arbitrary_caret_soup_is_classified_not_misread(body in "\\[[0-9a-z ^|=]{0,120}\\]") {
            // Whatever it is, a success must hold whole records with a status word each.
            if let Ok(StatusReply::Attempts(a)) = parse_status_reply(&body) {
                prop_assert!(!a.is_empty());
                prop_assert!(a.iter().all(|x| !x.status.is_empty()));
            }
        }
    }
}
