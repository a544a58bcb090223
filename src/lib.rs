//! ivr-campaign: run IVR phone campaigns on a Voicent Gateway from a contact CSV.
//!
//! Layout:
//! - [`cli`], [`config`]: flags and campaign TOML, merged and validated before any I/O.
//! - [`contacts`]: reading the list (encoding, delimiter, columns) and judging each row (libphonenumber).
//! - [`window`], [`suppress`], [`ledger`]: the calling rules (window per recipient zone, opt-outs, the cap
//!   per number across campaigns).
//! - [`gateway`]: the pure wire protocol and the HTTP client.
//! - [`journal`]: the SQLite journal, the run lock, group commit.
//! - [`campaign`]: the engine (dispatcher, call tasks, pollers, circuit breaker); [`runner`] wraps it for
//!   `run` (progress, summary).
//! - [`results`]: the results CSV, a view of the journal; [`report`]: the HTML report; [`status`]: counts.
//! - [`dryrun`]: `validate` / `run --dry-run` and the forecast.
//! - [`logging`]: log formats, masked phone numbers, logs above the progress bar.
//! - [`simulator`]: a stand-in gateway for rehearsals and tests.
//!
//! The life of a contact: `pending` → intent recorded (durable) → call request → `dialed(reqid)` (durable) →
//! polled until the last record is `made` or `failed` (durable) → gateway record removed. A request that was
//! refused or answered without a request id goes back to `pending` and is retried a bounded number of times;
//! one whose answer was lost becomes `unknown` and is never redialed automatically. After a crash, contacts
//! with a request id are polled again and contacts with only an intent become `unknown`.

pub mod campaign;
pub mod cli;
pub mod config;
pub mod contacts;
pub mod dryrun;
pub mod error;
pub mod gateway;
pub mod journal;
pub mod ledger;
pub mod logging;
pub mod report;
pub mod results;
pub mod runner;
pub mod simulator;
pub mod status;
pub mod suppress;
pub mod window;
