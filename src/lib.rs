//! ivr-campaign: run IVR phone campaigns on a Voicent Gateway from a contact CSV.
//!
//! Layout, lowest layer first: each module uses only those above it in this list (`tests/layers.rs` checks
//! it), so there is no module circle. Ask of any change where a contact's state changes, and the answer is
//! [`store::contact`]; ask what a setting does, and it is [`settings`].
//! - [`types`], [`error`], [`determinism`], [`privacy`]: leaves (value types, exit codes, what a seed pins,
//!   what logs may show of a person).
//! - [`zones`], [`gateway`], [`logging`]: each recipient's zone from the IANA database built in; the pure wire
//!   protocol and the HTTP client with its failure classes; log output.
//! - [`contacts`]: reading the list (encoding, delimiter, columns) and judging each number (libphonenumber);
//!   [`simulator`]: a stand-in gateway for rehearsals and tests, and the gateway model of the simulation tier.
//! - [`fields`]: what a call carries besides the number: caller ID, detection, fields from the row.
//! - [`rules`]: one pipeline for `run` and `validate`: admission (invalid, duplicate), suppression, the window
//!   in each recipient's zone, the cap per number across campaigns.
//! - [`cli`], [`settings`]: flags, and the campaign file merged under them and validated before any I/O.
//! - [`store`]: the contact life cycle (states, events, their effects, the only allowed transitions) and the
//!   SQLite journal that applies it as compare-and-set, with the run lock and group commit.
//! - [`engine`]: the coordinator (one loop owning scheduling), call tasks, pacing, the circuit breaker.
//! - [`output`]: views of the journal: results CSV, HTML report, summary, `status`, progress.
//! - [`commands`]: `run` and `validate`.

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
