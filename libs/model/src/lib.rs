//! herd's event model and its wire encodings.
//!
//! - [`Event`]: one data point of a time series, with a unique identity
//!   (producer id + sequence number) that makes every write idempotent.
//! - [`decode`]: turns one Kafka message into events and per-event rejects,
//!   whatever its bytes; it never panics and never drops a reject silently.
//! - [`json`] and [`arrow_ipc`]: the two encodings, both ways (decoders for
//!   the worker, encoders for producers, tests and the load generator).
//!
//! The schema and the encodings are documented in `libs/model/README.md`.

pub mod arrow_ipc;
mod decode;
mod event;
pub mod json;

pub use decode::{decode, Decoded, Format, Position, Reject, CONTENT_TYPE_HEADER};
pub use event::{Event, InvalidEvent, LIMITS};
