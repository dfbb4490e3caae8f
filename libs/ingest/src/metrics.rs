//! Metric names, per the style `herd_<thing>_<unit>`, `_total` for counters.
//! Recorded per chunk or per write request, never per event.

pub const MESSAGES_CONSUMED: &str = "herd_messages_consumed_total";
pub const EVENTS_CONSUMED: &str = "herd_events_consumed_total";
pub const EVENTS_WRITTEN: &str = "herd_events_written_total";
/// Label `stage`: decode or write.
pub const EVENTS_DEAD_LETTERED: &str = "herd_events_dead_lettered_total";
/// Label `kind`: transient or permanent.
pub const WRITE_RETRIES: &str = "herd_write_retries_total";
pub const WRITE_LATENCY: &str = "herd_write_latency_seconds";
pub const CHUNK_ROWS: &str = "herd_chunk_rows";
pub const CHUNK_BYTES: &str = "herd_chunk_bytes";
/// Event time to write acknowledged, of the oldest event of each chunk.
pub const END_TO_END_LATENCY: &str = "herd_end_to_end_latency_seconds";
/// Labels `topic`, `partition`: messages behind the partition's end.
pub const PARTITION_LAG: &str = "herd_partition_lag_messages";
pub const CHUNKS_IN_FLIGHT: &str = "herd_chunks_in_flight";
pub const CHECKPOINTS: &str = "herd_checkpoints_total";
/// Checkpoints Cassandra refused because a newer grant holds the shard.
pub const CHECKPOINTS_FENCED: &str = "herd_checkpoints_fenced_total";
/// Messages of a shard stopped meanwhile (prefetched), skipped.
pub const MESSAGES_SKIPPED: &str = "herd_messages_skipped_total";
/// The configuration version this worker runs (0: command line only).
pub const CONFIG_VERSION: &str = "herd_config_version";
/// Configuration documents refused (invalid), keeping the last good one.
pub const CONFIG_REJECTED: &str = "herd_config_rejected_total";
/// Shards this worker runs.
pub const SHARDS_RUNNING: &str = "herd_shards_running";
/// Kafka append time of a chunk's oldest new message to its write acknowledged.
pub const APPEND_TO_WRITE: &str = "herd_append_to_write_seconds";
/// Kafka append time of the oldest message a checkpoint covers first to the
/// checkpoint accepted.
pub const APPEND_TO_CHECKPOINT: &str = "herd_append_to_checkpoint_seconds";
/// Events a producer sent again (same producer and seq), kept out of rollups.
pub const ROLLUP_REPEATS: &str = "herd_rollup_repeats_total";
/// Events below their producer's de-duplication horizon: counted unchecked.
pub const ROLLUP_BEYOND_HORIZON: &str = "herd_rollup_beyond_horizon_total";

/// Registers descriptions, so that /metrics says what each metric means.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(MESSAGES_CONSUMED, Unit::Count, "Kafka messages consumed");
    describe_counter!(EVENTS_CONSUMED, Unit::Count, "Events decoded from consumed messages");
    describe_counter!(EVENTS_WRITTEN, Unit::Count, "Events acknowledged by Cassandra");
    describe_counter!(
        EVENTS_DEAD_LETTERED,
        Unit::Count,
        "Events sent to the dead-letter topic, by stage"
    );
    describe_counter!(WRITE_RETRIES, Unit::Count, "Retried Cassandra writes, by kind of failure");
    describe_histogram!(WRITE_LATENCY, Unit::Seconds, "Latency of one Cassandra write request");
    describe_histogram!(CHUNK_ROWS, Unit::Count, "Events per chunk of work");
    describe_histogram!(CHUNK_BYTES, Unit::Bytes, "Kafka payload bytes per chunk of work");
    describe_histogram!(
        END_TO_END_LATENCY,
        Unit::Seconds,
        "Event time to write acknowledged, oldest event per chunk"
    );
    describe_gauge!(
        PARTITION_LAG,
        Unit::Count,
        "Messages between the consumer position and the partition end"
    );
    describe_gauge!(CHUNKS_IN_FLIGHT, Unit::Count, "Chunks being written");
    describe_counter!(CHECKPOINTS, Unit::Count, "Shard checkpoints accepted by Cassandra");
    describe_counter!(
        CHECKPOINTS_FENCED,
        Unit::Count,
        "Shard checkpoints refused because a newer grant holds the shard"
    );
    describe_counter!(
        MESSAGES_SKIPPED,
        Unit::Count,
        "Prefetched messages of stopped shards, skipped"
    );
    describe_gauge!(SHARDS_RUNNING, Unit::Count, "Shards this worker runs");
    describe_gauge!(
        CONFIG_VERSION,
        Unit::Count,
        "Live configuration version this worker runs (0: command line only)"
    );
    describe_counter!(
        CONFIG_REJECTED,
        Unit::Count,
        "Invalid configuration documents refused (the last good one stays)"
    );
    // Rare events start at 0, so that rate() and alerts see them from the start.
    for stage in ["decode", "write"] {
        metrics::counter!(EVENTS_DEAD_LETTERED, "stage" => stage).increment(0);
    }
    for kind in ["transient", "permanent"] {
        metrics::counter!(WRITE_RETRIES, "kind" => kind).increment(0);
    }
    describe_histogram!(
        APPEND_TO_WRITE,
        Unit::Seconds,
        "Kafka append time of the oldest message a chunk writes first to its write acknowledged: how fresh stored points and (blocks layout) their rollups are"
    );
    describe_histogram!(
        APPEND_TO_CHECKPOINT,
        Unit::Seconds,
        "Kafka append time of the oldest message a checkpoint covers first to the checkpoint accepted: how far behind a restart would start over"
    );
    describe_counter!(
        ROLLUP_REPEATS,
        Unit::Count,
        "Events repeating a (producer, seq) already seen, not counted in rollups (re-reads after a restart count again)"
    );
    describe_counter!(
        ROLLUP_BEYOND_HORIZON,
        Unit::Count,
        "Events older than their producer's de-duplication horizon, counted in rollups unchecked"
    );
    for name in [
        CHECKPOINTS_FENCED,
        CONFIG_REJECTED,
        MESSAGES_SKIPPED,
        ROLLUP_REPEATS,
        ROLLUP_BEYOND_HORIZON,
    ] {
        metrics::counter!(name).increment(0);
    }
}
