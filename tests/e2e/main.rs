//! End-to-end tests: the real binary against the project's gateway simulator over loopback HTTP.

mod connections;
mod crash;
mod damage;
mod faults;
mod fields;
mod gateways;
mod guards;
mod helpers;
#[path = "../kit/mod.rs"]
pub mod kit;
mod lists;
mod newcomer;
mod operator;
mod outcomes;
mod pacing;
mod reminders;
mod rules;
mod simulator;
mod views;
