//! herd's ingest pipeline: Kafka in, Cassandra out, nothing lost, nothing
//! duplicated.
//!
//! Pure parts, unit-tested without servers:
//! - [`settings`]: batching, retry and dead-letter settings, validated;
//! - [`chunk`]: cutting messages into chunks and single-partition batches;
//! - [`commit`]: releasing offsets only behind stored events, in order;
//! - [`backoff`]: exponential backoff with full jitter;
//! - [`dead_letter`]: what a dead-letter record carries.
//!
//! I/O at the edge:
//! - [`source`]: the Kafka consumer, the seam for shard ownership;
//! - [`pipeline`]: the loops that tie them together (see its docs for the
//!   data flow, backpressure and shutdown).
//!
//! Why nothing is lost or duplicated is explained in `libs/ingest/README.md`.

pub mod backoff;
pub mod chunk;
pub mod commit;
pub mod dead_letter;
pub mod metrics;
pub mod pipeline;
pub mod settings;
pub mod source;

pub use pipeline::{DeadLetterSink, Pipeline, PipelineError, Summary};
pub use settings::{IngestArgs, IngestSettings};
pub use source::KafkaSource;
