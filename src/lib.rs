//! ivr-campaign: run IVR phone campaigns on a Voicent Gateway from a contact CSV.
//!
//! Layout (each concern has one home; ask of any change where a contact's state changes, and the answer is
//! [`store::contact`]):
//! - [`types`]: value types (rates, durations, the number format, secrets); a leaf that imports nothing here.
//! - [`cli`], [`config`]: flags and campaign TOML, merged and validated before any I/O.
//! - [`zones`]: each recipient's zone (the list's column, the number's prefix, the campaign's), looked up in
//!   the IANA database built into the binary.
//! - [`fields`]: what a call carries besides the number: caller ID, detection, fields from the row.
//! - [`contacts`]: reading the list (encoding, delimiter, columns) and judging each row (libphonenumber).
//! - [`rules`]: one pipeline for `run` and `validate`: admission (invalid, duplicate), suppression, the window
//!   in each recipient's zone, the cap per number across campaigns.
//! - [`store`]: the contact life cycle (states, events, the only allowed transitions) and the SQLite journal
//!   that applies it as compare-and-set, with the run lock and group commit.
//! - [`gateway`]: the pure wire protocol and the HTTP client with its failure classes.
//! - [`engine`]: the coordinator (one loop owning scheduling), call tasks, pacing, the circuit breaker.
//! - [`output`]: views of the journal: results CSV, HTML report, summary, `status`, progress.
//! - [`commands`]: `run` and `validate`.
//! - [`logging`]: log formats, masked phone numbers, logs above the progress bar.
//! - [`simulator`]: a stand-in gateway for rehearsals and tests, and the gateway model of the simulation tier.
//! - [`determinism`]: what a run leaves to chance, pinned by the simulation tier so a seed replays exactly.

pub mod cli;
pub mod commands;
pub mod contacts;
pub mod determinism;
pub mod engine;
pub mod error;
pub mod fields;
pub mod gateway;
pub mod logging;
pub mod output;
pub mod privacy;
pub mod rules;
pub mod settings;
pub mod simulator;
pub mod store;
pub mod types;
pub mod zones;
