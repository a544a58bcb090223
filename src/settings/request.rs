//! What each call request carries besides the number: caller ID, detection, fields from the row, the info
//! text; from flags over the file.

use super::file::CampaignFile;
use crate::cli::RunArgs;
use crate::error::{Error, Result};

/// The call request's extra fields from flags and the file (a flag's field wins over the file's of the same
/// name), validated. A flag's mistake is a usage error (64), the file's a configuration error (78).
pub(super) fn request_fields(
    args: &RunArgs,
    file: &CampaignFile,
) -> Result<crate::fields::RequestFields> {
    let flag = |e: String| Error::Usage(e);
    let key = |e: String| Error::Config(format!("campaign file: {e}"));
    let mut out = crate::fields::RequestFields::default();
    match (&args.caller_id, &file.caller_id) {
        (Some(c), _) => {
            out.caller_id =
                Some(crate::fields::caller_id(c).map_err(|e| flag(format!("--caller-id: {e}")))?)
        }
        (None, Some(c)) => {
            out.caller_id =
                Some(crate::fields::caller_id(c).map_err(|e| key(format!("caller-id: {e}")))?)
        }
        (None, None) => {}
    }
    const LEVELS: &str = "use 0 (balanced), 1 (more aggressive), 2 (most aggressive) or 3 (off)";
    match (&args.detection, file.detection) {
        (Some(d), _) => match d.trim().parse::<u8>() {
            Ok(d) if d <= 3 => out.detection = Some(d),
            _ => return Err(flag(format!("--detection {d:?}: {LEVELS}"))),
        },
        (None, Some(d)) => match u8::try_from(d) {
            Ok(d) if d <= 3 => out.detection = Some(d),
            _ => return Err(key(format!("detection = {d}: {LEVELS}"))),
        },
        (None, None) => {}
    }
    for (param, flag_value, file_value, what) in [
        (
            &mut out.caller_id_param,
            &args.caller_id_param,
            &file.caller_id_param,
            "caller-id-param",
        ),
        (
            &mut out.detection_param,
            &args.detection_param,
            &file.detection_param,
            "detection-param",
        ),
    ] {
        if let Some(name) = flag_value.as_ref().or(file_value.as_ref()) {
            let f = crate::fields::field(name, "").map_err(|e| {
                if flag_value.is_some() {
                    flag(format!("--{what}: {e}"))
                } else {
                    key(format!("{what}: {e}"))
                }
            })?;
            *param = f.name;
        }
    }
    if out
        .caller_id_param
        .eq_ignore_ascii_case(&out.detection_param)
    {
        return Err(Error::Usage(format!(
            "caller-id-param and detection-param are both {:?}: the gateway would get two values under one name",
            out.caller_id_param
        )));
    }
    let mut fields: Vec<crate::fields::Field> = Vec::new();
    for (name, template) in file.fields.iter().flatten() {
        let template = template.as_str().ok_or_else(|| {
            key(format!(
                "[fields]: {name} = {template}: write the template as a string, e.g. {name} = \"{{column}}\""
            ))
        })?;
        if let Some(twin) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
            return Err(key(format!(
                "[fields]: {name} and {} are one field (names are case-insensitive, as the gateway's are); keep one",
                twin.name
            )));
        }
        fields
            .push(crate::fields::field(name, template).map_err(|e| key(format!("[fields]: {e}")))?);
    }
    for spec in &args.field {
        let f = crate::fields::parse_field(spec).map_err(|e| flag(format!("--field: {e}")))?;
        fields.retain(|g| !g.name.eq_ignore_ascii_case(&f.name));
        fields.push(f);
    }
    out.fields = fields;
    // `info` is a required parameter of the call request: an empty label is not one.
    let empty_info = "is empty; the gateway requires an info text (leave it out for the default)";
    match (&args.info, &file.info) {
        (Some(t), _) if t.trim().is_empty() => return Err(flag(format!("--info {empty_info}"))),
        (None, Some(t)) if t.trim().is_empty() => return Err(key(format!("info {empty_info}"))),
        _ => {}
    }
    out.info = match (&args.info, &file.info) {
        (Some(t), _) => {
            Some(crate::fields::Template::parse(t).map_err(|e| flag(format!("--info: {e}")))?)
        }
        (None, Some(t)) => {
            Some(crate::fields::Template::parse(t).map_err(|e| key(format!("info: {e}")))?)
        }
        (None, None) => None,
    };
    let (required, from_flag) = match (&args.require_fields, &file.require_fields) {
        (Some(v), _) => (v.clone(), true),
        (None, Some(w)) => (w.clone().items(), false),
        (None, None) => (Vec::new(), true),
    };
    for r in &required {
        if !out
            .fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(r.trim()))
        {
            let e = format!("require-fields names {r:?}, which no field sets");
            return Err(if from_flag {
                flag(format!("--{e}"))
            } else {
                key(e)
            });
        }
    }
    out.required = required.iter().map(|r| r.trim().to_string()).collect();
    Ok(out)
}
