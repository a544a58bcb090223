//! What people hear: the settings a campaign's calls were made with (the IVR app, the caller ID, the fields
//! the app reads), logged in the journal's `meta` under `heard` each time a run starts with them changed.
//!
//! A setting changed between two runs splits a campaign: the people called before heard one thing, the rest
//! another. The log lets a run say so when it starts, and the results say which app each call used: a call's
//! settings are the last ones logged at or before its intent (runs never overlap on one journal: the lock).

use rusqlite::{Connection, OptionalExtension};

/// The settings of the calls from `from_ms` on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heard {
    pub from_ms: i64,
    pub app: String,
    pub caller_id: Option<String>,
    /// `name=template` of each field, in order.
    pub fields: Vec<String>,
}

impl Heard {
    pub fn of(cfg: &crate::settings::RunConfig, from_ms: i64) -> Heard {
        Heard {
            from_ms,
            app: cfg.call.app.clone(),
            caller_id: cfg.call.request.caller_id.clone(),
            fields: cfg
                .call
                .request
                .fields
                .iter()
                .map(|f| format!("{}={}", f.name, f.template.text))
                .collect(),
        }
    }

    /// What changed from `was` to this, for people (empty: nothing a person hears).
    pub fn changes_since(&self, was: &Heard) -> Vec<String> {
        let mut out = Vec::new();
        if self.app != was.app {
            out.push(format!("app {:?} → {:?}", was.app, self.app));
        }
        if self.caller_id != was.caller_id {
            let show = |c: &Option<String>| c.clone().unwrap_or_else(|| "(none)".into());
            out.push(format!(
                "caller-id {} → {}",
                show(&was.caller_id),
                show(&self.caller_id)
            ));
        }
        if self.fields != was.fields {
            out.push(format!(
                "fields [{}] → [{}]",
                was.fields.join(", "),
                self.fields.join(", ")
            ));
        }
        out
    }
}

/// The log, oldest first (empty for a journal that has none yet, or one this cannot read).
pub fn log(conn: &Connection) -> Vec<Heard> {
    let text: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'heard'", [], |r| {
            r.get(0)
        })
        .optional()
        .ok()
        .flatten();
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The app of a call requested at `at_ms`, when the campaign used more than one (`None`: it used one, or
/// nothing is logged).
pub fn app_at(log: &[Heard], at_ms: i64) -> Option<&str> {
    let first = log.first()?;
    if log.iter().all(|h| h.app == first.app) {
        return None;
    }
    let h = log
        .iter()
        .rev()
        .find(|h| h.from_ms <= at_ms)
        .unwrap_or(first);
    Some(h.app.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(from_ms: i64, app: &str) -> Heard {
        Heard {
            from_ms,
            app: app.into(),
            caller_id: None,
            fields: vec![],
        }
    }

    #[test]
    fn a_calls_app_is_the_one_logged_last_before_it() {
        assert_eq!(app_at(&[h(0, "A"), h(50, "A")], 60), None);
        let log = [h(10, "A"), h(50, "B"), h(90, "A")];
        assert_eq!(app_at(&log, 10), Some("A"));
        assert_eq!(app_at(&log, 49), Some("A"));
        assert_eq!(app_at(&log, 50), Some("B"));
        assert_eq!(app_at(&log, 95), Some("A"));
        assert_eq!(app_at(&log, 5), Some("A"));
        assert_eq!(
            h(1, "B").changes_since(&h(0, "A")),
            vec!["app \"A\" → \"B\"".to_string()]
        );
    }
}
