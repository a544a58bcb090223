//! Where a campaign's files are, and the guard that no file a run writes is one it reads, another it
//! writes, or its journal.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The journal's file inside the state directory.
pub const DB_FILE: &str = "journal.sqlite";
/// The run lock inside the state directory: held by the run that owns the journal.
pub const LOCK_FILE: &str = "lock";

/// Default results path: `contacts.csv` → `contacts.results.csv` beside it.
pub fn default_output(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "contacts".into());
    input.with_file_name(format!("{stem}.results.csv"))
}

/// Default journal directory: `results.csv` → `results.csv.state/` beside it.
pub fn default_state_dir(output: &Path) -> PathBuf {
    let mut name = output
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(".state");
    output.with_file_name(name)
}

/// Whether two paths name the same file (or would: a path that does not exist yet is compared as written,
/// made absolute).
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    resolved(a) == resolved(b)
}

/// Where a path leads, whether or not it exists yet: its deepest existing ancestor with symbolic links and
/// `..` resolved, then the rest taken as written (`..` there undoing the name before it). Two spellings of
/// one file (`sub/../r.csv`, a link to its directory) compare equal before either exists.
pub(super) fn resolved(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut existing = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let mut base = loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            break c;
        }
        match existing.components().next_back() {
            Some(Component::Normal(name)) => rest.push(name.to_os_string()),
            Some(Component::ParentDir) => rest.push("..".into()),
            Some(Component::CurDir) => {}
            _ => break existing,
        }
        existing.pop();
    };
    for name in rest.iter().rev() {
        if name == ".." {
            base.pop();
        } else {
            base.push(name);
        }
    }
    base
}

/// Whether an existing file is an SQLite database (a journal or a cap ledger): never a report's target.
pub(super) fn is_sqlite(p: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 16];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"SQLite format 3\0")
}

/// The files a run writes must not be the files it reads, nor each other, nor its journal: a typo in
/// `--output` must not overwrite the list, nor `--metrics-file` the journal that says who was called.
pub(super) fn refuse_overwriting(
    input: &Path,
    output: &Path,
    state_dir: &Path,
    suppress: &[PathBuf],
    also_read: &[(&str, &Path)],
    reports: &[(&str, Option<&Path>)],
) -> Result<()> {
    let mut written: Vec<(&str, &Path)> = vec![("--output", output)];
    written.extend(reports.iter().filter_map(|(flag, p)| Some((*flag, (*p)?))));
    let state = resolved(state_dir);
    for (i, (what_w, w)) in written.iter().enumerate() {
        if let Some(why) = not_a_file_to_replace(w) {
            return Err(Error::Usage(format!("{what_w} {}: {why}", w.display())));
        }
        let db = DB_FILE;
        let journal_files = [
            state.clone(),
            state.join(db),
            state.join(format!("{db}-wal")),
            state.join(format!("{db}-shm")),
            state.join(LOCK_FILE),
        ];
        if journal_files.contains(&resolved(w)) || is_sqlite(w) {
            return Err(Error::Usage(format!(
                "{what_w} {} is a journal or one of its files, or a cap ledger: it would overwrite what a campaign knows; write it elsewhere",
                w.display()
            )));
        }
        if let Some((what_o, _)) = written[..i].iter().find(|(_, o)| same_file(w, o)) {
            return Err(Error::Usage(format!(
                "{what_w} {} is also {what_o}: one would overwrite the other; give each its own file",
                w.display()
            )));
        }
    }
    let mut read: Vec<(&str, &Path)> = vec![("the contact list", input)];
    read.extend(suppress.iter().map(|p| ("a suppression list", p.as_path())));
    read.extend_from_slice(also_read);
    for (what_w, w) in &written {
        for (what_r, r) in &read {
            if same_file(w, r) {
                return Err(Error::Usage(format!(
                    "{what_w} {} is {what_r}: it would be overwritten; write the results elsewhere",
                    w.display()
                )));
            }
        }
    }
    Ok(())
}

/// Why `path` cannot be replaced by a file written beside it: it exists and is not a regular file (a symbolic
/// link is judged by what it names).
pub fn not_a_file_to_replace(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return None;
    }
    let kind = if meta.is_dir() {
        "a directory"
    } else {
        "a device, pipe or socket, not a regular file"
    };
    Some(format!("it is {kind}; name a file"))
}

/// Finds the journal directory the way `run` would, for the commands that read a campaign (`status`,
/// `report`, `redial-unknown`).
pub fn locate_state(args: &crate::cli::StatusArgs) -> Result<PathBuf> {
    if let Some(s) = &args.state {
        return Ok(s.clone());
    }
    if let Some(o) = &args.output {
        return Ok(default_state_dir(o));
    }
    if args.campaign.is_none() {
        if let Some(i) = &args.input {
            return Ok(default_state_dir(&default_output(i)));
        }
        return Err(Error::Usage(
            "status needs a campaign file, --state DIR, --output FILE or --input FILE".into(),
        ));
    }
    // Resolve paths exactly as `run` does; the app name is irrelevant here.
    let cfg = super::RunConfig::from_args(crate::cli::RunArgs {
        campaign: args.campaign.clone(),
        input: args.input.clone(),
        app: Some("-".into()),
        ..crate::cli::RunArgs::default()
    })?;
    Ok(cfg.files.state_dir)
}
