//! Reading a journal of any layout `run` migrates, without changing it.
//!
//! `run` brings an older journal up to date with `ALTER TABLE` when it opens it for writing. The views
//! (`status`, `report`, the dry run) must not write to a journal, perhaps while a run of an older release
//! holds it: on their read-only connection, each table an older layout lacks a column of is shadowed by a
//! temporary view that adds the column with the value `run`'s migration would give old rows, and a table it
//! lacks altogether by an empty temporary table. Temporary objects live in the connection's own memory, and
//! unqualified names find them before the journal's own tables.

use rusqlite::Connection;

use super::journal::OnJournal;
use crate::error::Result;

/// Columns added since the first layout: table, column, and the value old rows get (as `run` migrates them).
const ADDED: &[(&str, &str, &str)] = &[
    ("contacts", "record", "NULL"),
    ("contacts", "not_before", "NULL"),
    ("contacts", "note", "NULL"),
    ("contacts", "attempt", "1"),
    (
        "contacts",
        "tz_source",
        "CASE WHEN tz IS NOT NULL THEN 'column' END",
    ),
    ("contacts", "last_outcome", "NULL"),
    ("contacts", "recall_at", "NULL"),
    ("contacts", "gateway", "NULL"),
    ("calls", "gateway", "NULL"),
];

/// Tables the first layout did not have, as empty stand-ins with their columns.
const TABLES: &[(&str, &str)] = &[
    (
        "calls",
        "row INTEGER, attempt INTEGER, intent_at INTEGER, req_id TEXT, dialed_at INTEGER, finished_at INTEGER, outcome TEXT, detail TEXT, responses TEXT, gateway TEXT",
    ),
    (
        "actions",
        "id INTEGER, at INTEGER, action TEXT, contacts INTEGER, detail TEXT",
    ),
];

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let go = || -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1, 'main')")?;
        let names = st.query_map([table], |r| r.get::<_, String>(0))?;
        names.collect()
    };
    go().on_conn(conn)
}

/// Makes an older journal on `conn` read as the current layout, in this connection only. A journal of the
/// current layout (or one with no contacts table yet) is left as it is.
pub fn read_as_current(conn: &Connection) -> Result<()> {
    let contacts = columns(conn, "contacts")?;
    if contacts.is_empty() {
        return Ok(());
    }
    for (table, definition) in TABLES {
        if columns(conn, table)?.is_empty() {
            conn.execute_batch(&format!("CREATE TEMP TABLE {table} ({definition});"))
                .on_conn(conn)?;
        }
    }
    for table in ["contacts", "calls"] {
        let have = columns(conn, table)?;
        if have.is_empty() {
            // A stand-in made above, already complete.
            continue;
        }
        let missing: Vec<String> = ADDED
            .iter()
            .filter(|(t, c, _)| *t == table && !have.iter().any(|h| h == c))
            .map(|(_, c, value)| format!("{value} AS {c}"))
            .collect();
        if !missing.is_empty() {
            conn.execute_batch(&format!(
                "CREATE TEMP VIEW {table} AS SELECT *, {} FROM main.{table};",
                missing.join(", ")
            ))
            .on_conn(conn)?;
        }
    }
    Ok(())
}
