//! Talking to a Voicent Gateway: the pure wire protocol ([`protocol`]) and the HTTP client ([`client`]).

pub mod client;
pub mod protocol;

pub use client::{Exchange, Gateway, PlaceError, PollError, Wire};
