//! Talking to a Voicent Gateway: the pure wire protocol ([`protocol`]) and the client ([`client`]) and how its requests travel ([`transport`]).

pub mod client;
pub mod protocol;
pub mod transport;

pub use client::{Exchange, Gateway, PlaceError, PollError, Wire};
