//! The crate's modules form layers, and each imports only from layers below it: no module circle, and no
//! view, rule or store reaching up into what drives it. Read from the source itself, so a new `use` that
//! points the wrong way fails here, with the file and the line, before it can tie the modules in a knot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Lowest first. A module may use any module of its own layer's index or below; the comment says why each
/// sits where it does.
const LAYERS: &[(&str, &[&str])] = &[
    // Values, exit codes, seeded chance, what logs may show: leaves.
    ("leaves", &["types", "error", "determinism", "privacy"]),
    // Pure knowledge of the outside world: zones, the wire protocol and its client, log output.
    ("outside", &["zones", "gateway", "logging"]),
    // The contact list, and the stand-in gateway (which speaks the protocol above).
    ("inputs", &["contacts", "simulator"]),
    // What a call carries, made from a row.
    ("fields", &["fields"]),
    // Who may be called and when: window, suppression, the cap.
    ("rules", &["rules"]),
    // Flags, then the settings that merge them over the campaign file.
    ("cli", &["cli"]),
    ("settings", &["settings"]),
    // Where a contact's state changes.
    ("store", &["store"]),
    // What drives calls.
    ("engine", &["engine"]),
    // Views of the store for people and programs.
    ("output", &["output"]),
    // The commands that put it all together.
    ("commands", &["commands"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/store/journal.rs` → `store`); `None` for the crate root and
/// the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every `crate::module` a file names in code (comments and doc links do not count), with its line, including
/// the names inside `use crate::{a, b::c}`.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_group = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let code = raw.split("//").next().unwrap_or(raw);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                in_group = !group.contains('}');
                found.extend(group_names(group).map(|n| (i + 1, n)));
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push((i + 1, name));
                }
            }
            rest = after;
        }
        if in_group && !code.contains("crate::{") {
            found.extend(group_names(code).map(|n| (i + 1, n)));
            if code.contains('}') {
                in_group = false;
            }
        }
    }
    found
}

/// The first path segment of each item of a `use crate::{…}` group (on one line of it).
fn group_names(part: &str) -> impl Iterator<Item = String> + '_ {
    part.split([',', '{', '}'])
        .map(str::trim)
        .filter_map(|item| {
            let head: String = item
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let whole = item.strip_prefix(head.as_str())?;
            (!head.is_empty() && (whole.is_empty() || whole.starts_with("::"))).then_some(head)
        })
        // `self`, `super` and a nested group's inner names are not modules of the crate root.
        .filter(|n| n != "self" && n != "super")
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong: Vec<String> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            wrong.push(format!(
                "{}: module `{module}` has no layer here; give it one in LAYERS",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for (line, target) in references(&text) {
            if target == module {
                continue;
            }
            let Some(theirs) = layer_of(&target) else {
                continue;
            };
            *seen.entry(format!("{module} -> {target}")).or_default() += 1;
            if theirs > own {
                wrong.push(format!(
                    "{}:{line}: `{module}` ({}) uses `{target}` ({}), a layer above it",
                    file.strip_prefix(root).unwrap_or(file).display(),
                    LAYERS[own].0,
                    LAYERS[theirs].0
                ));
            }
        }
    }
    // The reading itself must find the imports that exist, or the check would pass on nothing.
    for edge in ["engine -> store", "commands -> engine", "settings -> cli"] {
        assert!(
            seen.contains_key(edge),
            "no `{edge}` found: the source reading is broken"
        );
    }
    assert!(
        wrong.is_empty(),
        "imports that point up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reading_finds_grouped_and_nested_imports_and_skips_comments() {
    let text = "use crate::{engine::Stats, store::{self, State}};\n// crate::output is a comment\nlet x = crate::rules::admit();\nuse crate::{\n    settings::RunConfig,\n    zones,\n};\n";
    let names: Vec<String> = references(text).into_iter().map(|(_, n)| n).collect();
    for want in ["engine", "store", "rules", "settings", "zones"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not found in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "output"),
        "a comment counted: {names:?}"
    );
}
