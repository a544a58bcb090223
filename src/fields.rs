//! What the gateway is told besides the number: the caller ID, answer detection, and fields made from each
//! contact's own row (`--field attendee={name}`, `--field appt="{date} {time}"`), so an IVR app knows who it
//! is talking to.
//!
//! A template is text with `{column}` references (case-insensitive, as the phone column) and `{{` / `}}` for
//! literal braces. Templates are parsed when the settings are read and bound to the list's columns before any
//! call, so a misspelt column is an error, not a call with an empty field. Each row is checked when the list is
//! read (a required field left empty makes it `invalid`), and its values are made from the journal's copy of
//! the row when its call is requested, so a template corrected between runs applies to everyone not yet
//! called.

use csv::ByteRecord;

/// What each call request carries besides the number, as the settings give it.
#[derive(Debug, Clone)]
pub struct RequestFields {
    /// Sent under `caller_id_param` on every request (a row's own field of that name wins).
    pub caller_id: Option<String>,
    pub caller_id_param: String,
    /// Answer detection: 0 balanced, 1 more aggressive, 2 most aggressive, 3 off.
    pub detection: Option<u8>,
    pub detection_param: String,
    /// Fields made from each contact's row.
    pub fields: Vec<Field>,
    /// The `info` text, from the row; `None`: the runner's own (campaign and row, to trace a record).
    pub info: Option<Template>,
    /// Fields a row must not leave empty (else the row is `invalid`).
    pub required: Vec<String>,
}

impl Default for RequestFields {
    fn default() -> Self {
        RequestFields {
            caller_id: None,
            // The likeliest wire names; no source we could read confirms them, hence the settings.
            caller_id_param: "callerid".into(),
            detection: None,
            detection_param: "detection".into(),
            fields: Vec::new(),
            info: None,
            required: Vec::new(),
        }
    }
}

impl RequestFields {
    /// How the settings read the list, for the journal: a change re-checks the contacts not yet called.
    pub fn reading(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("{}={}", f.name, f.template.text))
            .collect();
        format!(
            "fields={} | info={} | required={}",
            fields.join(" | "),
            self.info.as_ref().map_or("(default)", |t| t.text.as_str()),
            self.required.join(",")
        )
    }
}

/// The extra fields of every call request, bound to a list's columns.
#[derive(Debug, Clone, Default)]
pub struct Request {
    bound: Bound,
    caller_id_param: String,
    caller_id: Option<String>,
    detection: Option<(String, String)>,
}

/// What a call request carries besides the SDKs' own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    pub fields: Vec<(String, String)>,
    /// The `info` text; `None`: the runner's own.
    pub info: Option<String>,
}

impl Request {
    /// Binds the settings to the list's header row; the error names the first column a template needs and
    /// the list lacks.
    pub fn bind(settings: &RequestFields, headers: &ByteRecord) -> Result<Request, String> {
        Ok(Request {
            bound: Bound::new(
                &settings.fields,
                settings.info.as_ref(),
                &settings.required,
                headers,
            )?,
            caller_id_param: settings.caller_id_param.clone(),
            caller_id: settings.caller_id.clone(),
            detection: settings
                .detection
                .map(|d| (settings.detection_param.clone(), d.to_string())),
        })
    }

    /// Whether the row's own values are needed (else every call carries the same fields).
    pub fn uses_rows(&self) -> bool {
        !self.bound.is_empty()
    }

    /// The fields a call for this row carries: the caller ID, the detection level, then the row's own
    /// fields in order; a row field named like the caller ID or detection parameter takes their place. A
    /// row's caller ID must be a phone number; left empty it falls back to the campaign's. `Err(reason)`: the
    /// row cannot be called as configured (it is `invalid`).
    pub fn extras(&self, record: Option<&ByteRecord>) -> Result<Extras, String> {
        let rendered = match record {
            Some(r) => self.bound.render(r)?,
            None if self.uses_rows() => {
                return Err("the journal holds no copy of this row to make its fields from".into());
            }
            None => Rendered::default(),
        };
        let mut fields = Vec::with_capacity(rendered.fields.len() + 2);
        for (name, value) in rendered.fields {
            if name.eq_ignore_ascii_case(&self.caller_id_param) {
                if value.is_empty() {
                    continue;
                }
                let id = caller_id(&value).map_err(|e| format!("field {name}: {e}"))?;
                fields.push((name, id));
            } else {
                fields.push((name, value));
            }
        }
        let mut out = Vec::with_capacity(fields.len() + 2);
        let caller_id = self
            .caller_id
            .as_ref()
            .map(|c| (self.caller_id_param.clone(), c.clone()));
        for (name, value) in caller_id.iter().chain(self.detection.iter()) {
            if !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                out.push((name.clone(), value.clone()));
            }
        }
        out.extend(fields);
        Ok(Extras {
            fields: out,
            info: rendered.info,
        })
    }
}

/// Parameters the runner sets itself; a field may not overwrite them.
pub const RESERVED: [&str; 5] = ["phoneno", "startapp", "firstocc", "selfdelete", "info"];

/// Parameters that change when, how often or what the gateway calls (protocol §2): set as fields they would
/// move a call out of its window check (`schedule`, `calltime`), make the gateway call again by itself
/// (retries, recurrences) or make it do something other than the IVR call (a program, a text, an SMS).
pub const CONTROLS: [&str; 35] = [
    "reqid",
    "schedule",
    "calltime",
    "retrymax",
    "retrydelay",
    "recurtype",
    "recursubtype",
    "rskip",
    "rsunday",
    "rsmonday",
    "rstuesday",
    "rswednesday",
    "rsthursday",
    "rsfriday",
    "rssaturday",
    "rweekdayonly",
    "rdayofmonth",
    "rweekofmonth",
    "rdayofweek",
    "rmonthofyear",
    "rangetype",
    "rangetotal",
    "rangeendyear",
    "rangeendmonth",
    "rangeendday",
    "startexec",
    "cmdline",
    "sms",
    "txt",
    "audiofile",
    "startvxml",
    "starturl",
    "exitvxml",
    "exiturl",
    "eocactions",
];

/// A template, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub text: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Column(String),
}

/// A control character, or a Unicode line or paragraph separator (U+2028, U+2029; U+0085 is a control):
/// any of them splits a gateway field that must be one line.
fn breaks_a_line(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

impl Template {
    /// Parses `{column}` references and `{{` `}}` escapes. Control characters in the text are refused: a
    /// gateway field is one line.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.chars().any(breaks_a_line) {
            return Err(format!("{text:?} has a control character"));
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                    "{text:?}: a `{{` without its `}}` (write `{{{{` for a literal brace)"
                                ));
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    let name = name.trim().to_string();
                    if name.is_empty() {
                        return Err(format!("{text:?}: `{{}}` names no column"));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Column(name));
                }
                '}' => {
                    return Err(format!(
                        "{text:?}: a `}}` without its `{{` (write `}}}}` for a literal brace)"
                    ));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Template {
            text: text.to_string(),
            pieces,
        })
    }

    /// The columns it names.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Column(c) => Some(c.as_str()),
            Piece::Text(_) => None,
        })
    }
}

/// An extra form field: its name, and the template of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub template: Template,
}

/// Parses `NAME=TEMPLATE`.
pub fn parse_field(spec: &str) -> Result<Field, String> {
    let (name, template) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?} is not NAME=TEMPLATE, e.g. attendee={{name}}"))?;
    field(name, template)
}

/// A field from its name and template text, checked.
pub fn field(name: &str, template: &str) -> Result<Field, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(format!(
            "field {name:?}={template:?}: the field name is empty"
        ));
    }
    // ASCII only: a gateway that folds case the Java way reads `ſms` (long s) as `sms`, past the checks below.
    if name
        .chars()
        .any(|c| !c.is_ascii() || c.is_control() || c == '=' || c == '&')
    {
        return Err(format!(
            "field name {name:?} has a character a form field name cannot have (names are ASCII letters, digits and punctuation)"
        ));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        let hint = if name.eq_ignore_ascii_case("info") {
            " (use --info for it)"
        } else {
            ""
        };
        return Err(format!(
            "field {name:?} is set by ivr-campaign itself and cannot be overwritten{hint}"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if CONTROLS.contains(&lower.as_str()) {
        return Err(format!(
            "field {name:?} changes when, how often or what the gateway calls; ivr-campaign decides that itself (window, recalls), so it cannot be set as a field"
        ));
    }
    Ok(Field {
        name: name.to_string(),
        template: Template::parse(template).map_err(|e| format!("field {name}: {e}"))?,
    })
}

/// A caller ID as the gateway takes it: 10 or 11 digits, or an E.164 number (`+` and 8 to 15 digits). Spaces,
/// dots, dashes and parentheses are dropped.
pub fn caller_id(text: &str) -> Result<String, String> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let (plus, digits) = match cleaned.strip_prefix('+') {
        Some(d) => (true, d),
        None => (false, cleaned.as_str()),
    };
    let all_digits = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    // A number a person can see and call back: 10 digits are a North American number, 11 a country code
    // and number (Voicent's own form, 1 for North America), E.164 anything libphonenumber knows as valid.
    // Zeros or a made-up country code would reach the carrier as a spoofed or rejected caller ID.
    let international = match (plus, digits.len()) {
        (true, 8..=15) | (false, 11) => Some(format!("+{digits}")),
        (false, 10) => Some(format!("+1{digits}")),
        _ => None,
    };
    let ok = all_digits
        && international
            .and_then(|n| rlibphonenumber::PHONE_NUMBER_UTIL.parse(n, None).ok())
            .is_some_and(|n| n.is_valid());
    if ok {
        Ok(cleaned)
    } else {
        Err(format!(
            "{text:?} is not a caller ID: give 10 or 11 digits, or an E.164 number like +16465550100"
        ))
    }
}

/// The templates bound to a list's columns.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    fields: Vec<(String, Vec<BoundPiece>)>,
    info: Option<Vec<BoundPiece>>,
    /// Field names a row must not leave empty.
    required: Vec<String>,
}

#[derive(Debug, Clone)]
enum BoundPiece {
    Text(String),
    Column(usize),
}

/// What rendering one row gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub fields: Vec<(String, String)>,
    pub info: Option<String>,
}

impl Bound {
    /// Binds templates to the columns of `headers`; names the first column a template needs and the list
    /// lacks.
    pub fn new(
        fields: &[Field],
        info: Option<&Template>,
        required: &[String],
        headers: &ByteRecord,
    ) -> Result<Bound, String> {
        let names: Vec<String> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = String::from_utf8_lossy(h);
                let h = if i == 0 {
                    h.trim_start_matches('\u{feff}').to_string()
                } else {
                    h.to_string()
                };
                h.trim().to_ascii_lowercase()
            })
            .collect();
        let bind = |t: &Template, what: &str| -> Result<Vec<BoundPiece>, String> {
            t.pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(s) => Ok(BoundPiece::Text(s.clone())),
                    Piece::Column(c) => names
                        .iter()
                        .position(|n| *n == c.to_ascii_lowercase())
                        .map(BoundPiece::Column)
                        .ok_or_else(|| {
                            format!(
                                "{what} names the column {c:?}, which the list does not have (columns: {})",
                                names.join(", ")
                            )
                        }),
                })
                .collect()
        };
        let mut bound = Bound::default();
        for f in fields {
            bound.fields.push((
                f.name.clone(),
                bind(&f.template, &format!("field {}", f.name))?,
            ));
        }
        if let Some(t) = info {
            bound.info = Some(bind(t, "--info")?);
        }
        for r in required {
            if !fields.iter().any(|f| f.name.eq_ignore_ascii_case(r)) {
                return Err(format!(
                    "--require-fields names {r:?}, which no --field sets"
                ));
            }
            bound.required.push(r.clone());
        }
        Ok(bound)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.info.is_none()
    }

    /// Renders a row; `Err(reason)` makes the row `invalid` (a required field empty, a value with control
    /// characters).
    pub fn render(&self, record: &ByteRecord) -> Result<Rendered, String> {
        let render = |pieces: &[BoundPiece]| -> Result<String, String> {
            let mut out = String::new();
            for p in pieces {
                match p {
                    BoundPiece::Text(t) => out.push_str(t),
                    BoundPiece::Column(i) => {
                        let cell = record.get(*i).unwrap_or(b"");
                        let cell = String::from_utf8_lossy(cell);
                        out.push_str(cell.trim());
                    }
                }
            }
            if out.chars().any(breaks_a_line) {
                return Err("a line break or other control character in a cell the call's fields are made from".to_string());
            }
            Ok(out)
        };
        let mut rendered = Rendered::default();
        for (name, pieces) in &self.fields {
            let value = render(pieces).map_err(|e| format!("field {name}: {e}"))?;
            if value.is_empty() && self.required.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "field {name} is required and is empty for this row"
                ));
            }
            rendered.fields.push((name.clone(), value));
        }
        if let Some(pieces) = &self.info {
            rendered.info = Some(render(pieces).map_err(|e| format!("--info: {e}"))?);
        }
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests;
