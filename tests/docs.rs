//! The documentation cannot drift from the binary. README.md, docs/*.md and the example campaigns
//! (campaigns/**) may name only flags the command line has, subcommands that exist, and campaign-file and
//! scenario keys the real loaders accept.
//!
//! Nothing here is a hand-kept list of what the program accepts: flags and subcommands come from the clap
//! definition itself (every subcommand, global flags included, hidden ones left out because the binary
//! refuses them), and keys from the real loaders, by feeding the built binary a file with an unknown key in
//! each table and reading serde's "unknown field `x`, expected one of …". That survives any reshaping of the
//! settings code, as long as the file keeps refusing unknown keys (which the test would then report).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::CommandFactory;

/// Flags of other programs that the docs show beside ours (cargo, cargo fmt, node_exporter). Each is named
/// with its program so a new entry is a decision, not a reflex.
const OTHER_PROGRAMS_FLAGS: &[(&str, &str)] = &[
    ("release", "cargo"),
    ("test", "cargo test"),
    ("bench", "cargo bench"),
    ("path", "cargo install"),
    ("all-targets", "cargo clippy"),
    ("check", "cargo fmt"),
    ("lib", "cargo test"),
    ("collector.textfile.directory", "node_exporter"),
    ("now", "systemctl enable"),
];

/// A listen address the simulator refuses without a lookup (the port is out of range), so a scenario that loads
/// ends the command instead of serving.
const NO_PORT: &str = "127.0.0.1:99999";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ivr-campaign")
}

/// Every documentation file the test reads: the README, the docs pages, and the example campaigns with their
/// scripts and units.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds no pages");
    files.extend(docs);
    files.extend(campaign_files());
    files
}

/// campaigns/** except the data files a campaign reads (lists) and anything a local run left there.
fn campaign_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("campaigns/")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            if p.is_dir() {
                if !name.ends_with(".state") {
                    walk(&p, out);
                }
            } else if !name.contains("results") && !name.contains("dry-run") {
                let data = name.ends_with(".csv")
                    || (name.ends_with(".txt") && name.contains("do-not-call"));
                if !data {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("campaigns"), &mut out);
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The command line as the binary has it: for each subcommand, the long flags it takes (its own and the
/// global ones), hidden flags left out: those exist only to be refused with a pointer to their replacement.
struct CommandLine {
    flags: BTreeMap<String, BTreeSet<String>>,
    top: BTreeSet<String>,
}

impl CommandLine {
    fn new() -> CommandLine {
        let mut cmd = ivr_campaign::cli::Cli::command();
        // Building propagates the global flags into every subcommand and adds --help and --version.
        cmd.build();
        let longs = |c: &clap::Command| -> BTreeSet<String> {
            c.get_arguments()
                .filter(|a| !a.is_hide_set())
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        };
        let top = longs(&cmd);
        let mut flags = BTreeMap::new();
        for sub in cmd.get_subcommands() {
            flags.insert(sub.get_name().to_string(), longs(sub));
        }
        assert!(
            flags.contains_key("run") && top.contains("verbose"),
            "the clap definition was not read: {flags:?}"
        );
        CommandLine { flags, top }
    }

    fn any(&self, flag: &str) -> bool {
        self.top.contains(flag) || self.flags.values().any(|f| f.contains(flag))
    }
}

/// `--name` tokens in a text, with their line numbers.
fn flag_tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let mut i = 0;
        while i + 2 < b.len() {
            let starts = b[i] == b'-' && b[i + 1] == b'-' && b[i + 2].is_ascii_lowercase();
            let fresh = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-');
            if starts && fresh {
                let mut j = i + 2;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b"-._".contains(&b[j])) {
                    j += 1;
                }
                let name = line[i + 2..j].trim_end_matches(['.', '-', '_']);
                out.push((n + 1, name.to_string()));
                i = j;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// The code of a markdown text: fenced blocks (with their info string) and inline spans, with line numbers.
struct Code {
    blocks: Vec<(usize, String, String)>,
    spans: Vec<(usize, String)>,
}

fn code_of(markdown: &str) -> Code {
    let mut code = Code {
        blocks: Vec::new(),
        spans: Vec::new(),
    };
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                let info = line.trim_start().trim_start_matches('`').trim().to_string();
                open = Some((n + 1, info, String::new()));
            }
            (Some(_), true) => code.blocks.extend(open.take()),
            (Some((_, _, body)), false) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, false) => {
                for (k, part) in line.split('`').enumerate() {
                    if k % 2 == 1 {
                        code.spans.push((n + 1, part.to_string()));
                    }
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    code
}

/// Command lines in code: `ivr-campaign SUB …` or `cargo run … -- SUB …`, cut at a shell separator. Returns
/// the subcommand and the flags after it.
fn invocations(code: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split(" #").next().unwrap_or_default();
        for part in line.split(['|', ';', '>', '&', '(', ')']) {
            let words: Vec<&str> = part.split_whitespace().collect();
            let start = if let Some(i) = words.iter().position(|w| *w == "ivr-campaign") {
                i + 1
            } else if words.starts_with(&["cargo", "run"]) {
                match words.iter().position(|w| *w == "--") {
                    Some(i) => i + 1,
                    None => continue,
                }
            } else {
                continue;
            };
            let rest: Vec<String> = words[start..]
                .iter()
                .map(|w| w.trim_matches(['[', ']']).to_string())
                .collect();
            let Some(sub) = rest.iter().find(|w| !w.starts_with('-')) else {
                continue;
            };
            // A placeholder (COMMAND, <cmd>) or a path is not a subcommand.
            if !sub.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                continue;
            }
            let flags = rest
                .iter()
                .filter_map(|w| w.strip_prefix("--"))
                .map(|f| f.split('=').next().unwrap_or_default().to_string())
                .filter(|f| !f.is_empty())
                .collect();
            out.push((sub.clone(), flags));
        }
    }
    out
}

#[test]
fn every_flag_and_subcommand_the_docs_name_exists() {
    let cli = CommandLine::new();
    let other: BTreeSet<&str> = OTHER_PROGRAMS_FLAGS.iter().map(|(f, _)| *f).collect();
    let mut wrong = Vec::new();
    for file in documents() {
        let text = read(&file);
        for (line, flag) in flag_tokens(&text) {
            if !cli.any(&flag) && !other.contains(flag.as_str()) {
                wrong.push(format!(
                    "{}:{line}: --{flag} is not a flag of ivr-campaign",
                    shown(&file)
                ));
            }
        }
        let code = if file.extension().is_some_and(|e| e == "md") {
            let c = code_of(&text);
            let mut all: Vec<String> = c.blocks.into_iter().map(|b| b.2).collect();
            all.extend(c.spans.into_iter().map(|s| s.1));
            all
        } else {
            vec![text.clone()]
        };
        for piece in code {
            for (sub, flags) in invocations(&piece) {
                let Some(own) = cli.flags.get(&sub) else {
                    wrong.push(format!(
                        "{}: `{sub}` is not a subcommand of ivr-campaign (in `{}`)",
                        shown(&file),
                        piece.trim()
                    ));
                    continue;
                };
                for flag in flags {
                    if !own.contains(&flag) && !other.contains(flag.as_str()) {
                        wrong.push(format!(
                            "{}: `ivr-campaign {sub}` has no --{flag} (in `{}`)",
                            shown(&file),
                            piece.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "the docs drifted:\n{}", wrong.join("\n"));
}

/// The flag check catches a flag the binary refuses: the hidden `--redial-unknown` (now a command) and a
/// made-up one, while real flags of the right command pass.
#[test]
fn the_flag_check_refuses_a_flag_the_binary_refuses() {
    let cli = CommandLine::new();
    assert!(!cli.any("redial-unknown") && !cli.any("no-such-flag"));
    assert!(cli.any("poll-interval") && cli.any("log-format") && cli.any("fault-outage"));
    let text = "rerun with `ivr-campaign run campaign.toml --redial-unknown`";
    let flags: Vec<String> = flag_tokens(text).into_iter().map(|(_, f)| f).collect();
    assert_eq!(flags, ["redial-unknown"]);
    let found =
        invocations("ivr-campaign -q status --html x.html && cargo run --release -- run c.toml");
    assert_eq!(
        found,
        [
            ("status".to_string(), vec!["html".to_string()]),
            ("run".to_string(), vec![])
        ]
    );
    assert!(!cli.flags["status"].contains("html") && cli.flags["status"].contains("quiet"));
}

/// The keys a loader accepts in one table, read from its own refusal of an unknown one.
fn expected_keys(subcommand: &[&str], toml: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("probe.toml");
    std::fs::write(&file, toml).expect("write the probe");
    let out = Process::new(bin())
        .args(subcommand)
        .arg(&file)
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let list = stderr
        .split_once("expected one of ")
        .map(|(_, l)| l.lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| {
            panic!("the loader no longer refuses an unknown key with serde's list: {stderr}")
        });
    let keys: BTreeSet<String> = list
        .split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .collect();
    assert!(keys.len() > 1 && !keys.contains("zz-not-a-key"), "{stderr}");
    keys
}

/// What the campaign file and the simulator's scenario file accept, table by table.
struct Schema {
    campaign: BTreeSet<String>,
    gateways: BTreeSet<String>,
    simulator: BTreeSet<String>,
    /// Keys the file knows only to refuse them with a pointer elsewhere (`redial-unknown`).
    refused: BTreeSet<String>,
    scenario: BTreeSet<String>,
    rule: BTreeSet<String>,
    faults: BTreeSet<String>,
}

impl Schema {
    fn read() -> Schema {
        const UNKNOWN: &str = "zz-not-a-key = 1\n";
        let validate = ["validate"];
        // A port that cannot be bound: should a probe ever load, the simulator stops instead of serving.
        let scenario = ["simulate", "--listen", NO_PORT, "--scenario"];
        let all = expected_keys(&validate, UNKNOWN);
        let refused = refused_keys(&all);
        Schema {
            campaign: all.difference(&refused).cloned().collect(),
            gateways: expected_keys(
                &validate,
                &format!("[[gateways]]\nurl = \"http://gw\"\n{UNKNOWN}"),
            ),
            simulator: expected_keys(&validate, &format!("[simulator]\n{UNKNOWN}")),
            refused,
            scenario: expected_keys(&scenario, UNKNOWN),
            rule: expected_keys(&scenario, &format!("[[rule]]\n{UNKNOWN}")),
            faults: expected_keys(&scenario, &format!("[faults]\n{UNKNOWN}")),
        }
    }

    fn any(&self, key: &str) -> bool {
        [
            &self.campaign,
            &self.gateways,
            &self.simulator,
            &self.scenario,
            &self.rule,
            &self.faults,
        ]
        .iter()
        .any(|s| s.contains(key))
    }
}

/// The keys in serde's list that a valid campaign refuses whatever their value. A real key typed as a string,
/// number, list or table fails `= true` in the loader's parse (a message with the file's line); a flag-like
/// key takes it. A key kept only to be refused takes any value there and is then refused by name.
fn refused_keys(all: &BTreeSet<String>) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let contacts = root().join("campaigns/demo-contacts.csv");
    let base = format!(
        "input = {:?}\noutput = {:?}\napp = \"Probe\"\ngateway = \"sim\"\n",
        contacts.display().to_string(),
        dir.path().join("probe-results.csv").display().to_string()
    );
    let validate = |extra: &str| {
        let file = dir.path().join("probe.toml");
        std::fs::write(&file, format!("{base}{extra}")).expect("write the probe");
        let out = Process::new(bin())
            .args(["-q", "validate"])
            .arg(&file)
            .output()
            .expect("run the binary");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = validate("");
    assert_eq!(code, Some(0), "the probe campaign is not valid: {stderr}");
    let mut refused = BTreeSet::new();
    for key in all {
        if base.contains(&format!("{key} =")) {
            continue;
        }
        let (code, stderr) = validate(&format!("{key} = true\n"));
        let at_parse = stderr.contains(&format!("({key} = true)"));
        if code != Some(0) && !at_parse && stderr.contains(key.as_str()) {
            refused.insert(key.clone());
        }
    }
    refused
}

/// Keys of a TOML document, each with the table it is in (`""` for the top, `gateways`, `simulator`, `rule`,
/// `faults`), the free-form tables (`[fields]`, inline `fields = {…}` of a scenario rule) left out.
fn keys_of(doc: &toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in doc {
        out.push((String::new(), key.clone()));
        let tables: Vec<&toml::Table> = match value {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(a) => a.iter().filter_map(|v| v.as_table()).collect(),
            _ => Vec::new(),
        };
        if key == "fields" {
            continue;
        }
        for t in tables {
            for inner in t.keys() {
                if inner != "fields" {
                    out.push((key.clone(), inner.clone()));
                }
            }
        }
    }
    out
}

/// A TOML text is a simulator scenario when it has the scenario's tables; otherwise a campaign.
fn is_scenario(doc: &toml::Table) -> bool {
    doc.contains_key("rule") || doc.contains_key("faults")
}

fn check_document(schema: &Schema, doc: &toml::Table) -> Vec<String> {
    let mut wrong = Vec::new();
    let scenario = is_scenario(doc);
    for (table, key) in keys_of(doc) {
        let accepted = match (scenario, table.as_str()) {
            (false, "") => &schema.campaign,
            (false, "gateways") => &schema.gateways,
            (false, "simulator") => &schema.simulator,
            (true, "") => &schema.scenario,
            (true, "rule") => &schema.rule,
            (true, "faults") => &schema.faults,
            _ => continue,
        };
        if !accepted.contains(&key) {
            let place = if table.is_empty() {
                String::new()
            } else {
                format!("[{table}] ")
            };
            let what = if scenario {
                "a scenario"
            } else {
                "the campaign file"
            };
            wrong.push(format!("{place}`{key}` is not a key {what} accepts"));
        }
    }
    wrong
}

/// Runs the real loader over a TOML text and returns its complaint if the text fails to parse or to fit the
/// schema (a wrong type, an unknown key). A campaign fragment may fail later for what it leaves out (no
/// contact list): that is not a fault of the fragment.
fn loader_complaint(text: &str, scenario: bool) -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("block.toml");
    std::fs::write(&file, text).expect("write the block");
    let mut cmd = Process::new(bin());
    if scenario {
        cmd.args(["simulate", "--listen", NO_PORT, "--scenario"]);
    } else {
        cmd.arg("validate");
    }
    let out = cmd.arg(&file).output().expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let at_parse = stderr.contains(&format!("{} line ", file.display()));
    at_parse.then(|| stderr.trim().to_string())
}

#[test]
fn every_key_the_docs_name_is_one_the_file_accepts() {
    let schema = Schema::read();
    assert!(
        schema.campaign.contains("poll-interval") && schema.rule.contains("steps"),
        "the key lists were not read"
    );
    let mut wrong = Vec::new();
    for file in documents() {
        let text = read(&file);
        let is_md = file.extension().is_some_and(|e| e == "md");
        let mut tomls: Vec<(usize, String)> = Vec::new();
        if is_md {
            let code = code_of(&text);
            for (line, info, body) in &code.blocks {
                if info == "toml" {
                    tomls.push((*line, body.clone()));
                }
            }
            for (line, span) in &code.spans {
                // An inline `key = value` is a line of a campaign or scenario file.
                if let Some((key, _)) = span.split_once(" = ") {
                    let key = key.trim();
                    let plain =
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                    if plain && !schema.any(key) {
                        wrong.push(format!(
                            "{}:{line}: `{span}`: no file takes `{key}`",
                            shown(&file)
                        ));
                    }
                }
            }
        } else if file.extension().is_some_and(|e| e == "toml") {
            tomls.push((1, text.clone()));
        }
        for (line, body) in tomls {
            let doc: toml::Table = match toml::from_str(&body) {
                Ok(d) => d,
                Err(e) => {
                    wrong.push(format!(
                        "{}:{line}: not TOML: {}",
                        shown(&file),
                        e.message()
                    ));
                    continue;
                }
            };
            for w in check_document(&schema, &doc) {
                wrong.push(format!("{}:{line}: {w}", shown(&file)));
            }
            if let Some(c) = loader_complaint(&body, is_scenario(&doc)) {
                wrong.push(format!(
                    "{}:{line}: the loader refuses it: {c}",
                    shown(&file)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "the docs drifted:\n{}", wrong.join("\n"));
}

/// The campaign-file reference documents every key the file accepts, and only those: its tables' first
/// column names the key, under a heading that says which table of the file it belongs to.
#[test]
fn the_campaign_file_reference_lists_exactly_the_keys_the_file_accepts() {
    let schema = Schema::read();
    let page = root().join("docs/campaign-file.md");
    let text = read(&page);
    let mut documented: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut table = "";
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence {
            continue;
        }
        if line.starts_with('#') {
            table = if line.contains("[[gateways]]") {
                "gateways"
            } else if line.contains("[simulator]") {
                "simulator"
            } else {
                ""
            };
        } else if let Some(cell) = line.strip_prefix("| `") {
            let key = cell.split('`').next().unwrap_or_default().to_string();
            documented.entry(table).or_default().insert(key);
        }
    }
    let mut wrong = Vec::new();
    for (table, accepted) in [
        ("", &schema.campaign),
        ("gateways", &schema.gateways),
        ("simulator", &schema.simulator),
    ] {
        let listed = documented.remove(table).unwrap_or_default();
        for key in listed.difference(accepted) {
            wrong.push(format!("documented but not accepted in [{table}]: `{key}`"));
        }
        for key in accepted.difference(&listed) {
            wrong.push(format!("accepted in [{table}] but not documented: `{key}`"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/campaign-file.md and the loader disagree:\n{}",
        wrong.join("\n")
    );
}

/// The key checks are not vacuous: `redial-unknown` is found refused (the file knows it only to say it is a
/// command now), and a key nobody accepts in a TOML block is reported.
#[test]
fn the_key_check_refuses_a_key_the_file_refuses() {
    let schema = Schema::read();
    assert!(
        schema.refused.contains("redial-unknown"),
        "{:?}",
        schema.refused
    );
    assert!(!schema.campaign.contains("redial-unknown"));
    let doc: toml::Table =
        toml::from_str("redial-unknown = true\npoll-intervall = \"5s\"\n[simulator]\nlines = 2\n")
            .expect("TOML");
    let wrong = check_document(&schema, &doc);
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    let complaint = loader_complaint("poll-interval = 5\n", false);
    assert!(complaint.is_some_and(|c| c.contains("invalid type")));
    assert!(loader_complaint("poll-interval = \"5s\"\n", false).is_none());
    let scenario = loader_complaint("[[rule]]\nstep = [\"made\"]\n", true);
    assert!(scenario.is_some_and(|c| c.contains("unknown field")));
}

/// Files of this repository the docs point to (`src/…`, `tests/…`, `campaigns/…`, …) exist: a module moved
/// or renamed leaves no reader looking for it. Files a run writes (results, dry runs, journals) are left out.
#[test]
fn every_repository_path_the_docs_name_exists() {
    const TOP: &[&str] = &[
        "src/",
        "tests/",
        "scripts/",
        "bench/",
        "data/",
        "campaigns/",
        ".ci/",
    ];
    let mut wrong = Vec::new();
    for file in documents() {
        let text = read(&file);
        for (n, line) in text.lines().enumerate() {
            for word in line.split(|c: char| c.is_whitespace() || "`()[]<>\"',;|*".contains(c)) {
                let path = word.trim_end_matches(['.', ':']);
                let ours = TOP.iter().any(|t| path.starts_with(t)) && path.len() > 4;
                let written_by_a_run = path.contains("results") || path.contains("dry-run");
                if ours && !written_by_a_run && !root().join(path).exists() {
                    wrong.push(format!("{}:{}: {path} does not exist", shown(&file), n + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "the docs drifted:\n{}", wrong.join("\n"));
}
