//! The subcommands that do more than read: `run` and `validate` (`run --dry-run`).

pub mod run;
pub mod validate;
mod validate_rolling;
