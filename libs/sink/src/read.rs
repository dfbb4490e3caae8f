//! Reading points back, whatever the layout: the points of one series and
//! metric in a time range, or its latest N.
//!
//! In the blocks layout a range is read block by block: every block of the
//! series' buckets for the metric whose time span overlaps the range is
//! decoded, and the points are merged by (ts, producer, seq) with each event
//! identity kept once. So an event its producer sent twice is returned once,
//! as in the rows layout where the second send overwrites the first row.

use std::collections::BTreeMap;

use herd_model::Event;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlTimestamp;

use crate::schema::Pinned;
use crate::{block, rollup, Layout};

/// A failed read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("reading {table} failed")]
    Query {
        table: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("a block of series {series:?}, metric {metric:?} (window {topic}/{partition}@{window_start}) cannot be decoded")]
    Block {
        series: String,
        metric: String,
        topic: String,
        partition: i32,
        window_start: i64,
        #[source]
        source: block::BlockError,
    },
    #[error("the time range is empty: from {from} is not before to {to}")]
    EmptyRange { from: i64, to: i64 },
    #[error("this keyspace stores the {layout} layout; rollups are kept in the blocks layout only (a keyspace made with --layout blocks)")]
    NoRollups { layout: Layout },
    #[error("the rollups of a block of series {series:?}, metric {metric:?} (window {topic}/{partition}@{window_start}) cannot be decoded")]
    Rollups {
        series: String,
        metric: String,
        topic: String,
        partition: i32,
        window_start: i64,
        #[source]
        source: rollup::RollupError,
    },
}

fn query_error(
    table: &'static str,
) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> ReadError {
    move |source| ReadError::Query { table, source }
}

/// Reads points of a keyspace in its layout; prepare once, share.
#[derive(Clone)]
pub struct PointReader {
    layout: Layout,
    bucket_ms: i64,
    select: PreparedStatement,
}

/// How many buckets "latest N" walks back at most before it stops looking:
/// a year of one-day buckets.
const MAX_BUCKETS_BACK: i64 = 366;

impl PointReader {
    /// `pinned`: the keyspace's settings ([`crate::schema::pinned`]).
    pub async fn prepare(
        session: &Session,
        keyspace: &str,
        pinned: Pinned,
    ) -> Result<PointReader, ReadError> {
        let ks = keyspace;
        let cql = match pinned.layout {
            Layout::Rows => format!(
                "SELECT ts, value, tags, producer, seq FROM {ks}.points WHERE series = ? AND bucket = ? AND metric = ? AND ts >= ? AND ts < ?"
            ),
            // Only the blocks whose span meets the range: filtered by
            // Cassandra within the one partition, so a short range in a
            // bucket of thousands of blocks ships and decodes a few.
            Layout::Blocks => format!(
                "SELECT topic, partition, window_start, min_ts, max_ts, data FROM {ks}.blocks WHERE series = ? AND bucket = ? AND metric = ? AND max_ts >= ? AND min_ts < ? ALLOW FILTERING"
            ),
        };
        let mut select = session
            .prepare(cql)
            .await
            .map_err(|e| query_error(table(pinned.layout))(Box::new(e)))?;
        select.set_consistency(Consistency::LocalQuorum);
        select.set_page_size(5000);
        Ok(PointReader { layout: pinned.layout, bucket_ms: pinned.bucket_ms, select })
    }

    /// Points of `series` and `metric` with `from <= ts < to` (ms), oldest first.
    pub async fn range(
        &self,
        session: &Session,
        series: &str,
        metric: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, ReadError> {
        if from >= to {
            return Err(ReadError::EmptyRange { from, to });
        }
        let first = from - from.rem_euclid(self.bucket_ms);
        let mut out = Vec::new();
        let mut bucket = first;
        while bucket < to {
            out.extend(self.bucket(session, series, metric, bucket, from, to).await?);
            bucket += self.bucket_ms;
        }
        Ok(out)
    }

    /// The latest `n` points of `series` and `metric` at or before `now`
    /// (ms), newest first: the newest bucket, then older ones until `n`.
    pub async fn latest(
        &self,
        session: &Session,
        series: &str,
        metric: &str,
        n: usize,
        now: i64,
    ) -> Result<Vec<Event>, ReadError> {
        let mut out: Vec<Event> = Vec::new();
        let mut bucket = now - now.rem_euclid(self.bucket_ms);
        for _ in 0..MAX_BUCKETS_BACK {
            if out.len() >= n {
                break;
            }
            let mut points =
                self.bucket(session, series, metric, bucket, bucket, now.saturating_add(1)).await?;
            points.reverse();
            out.extend(points);
            bucket -= self.bucket_ms;
        }
        out.truncate(n);
        Ok(out)
    }

    /// One bucket's points in [from, to), oldest first, each identity once.
    async fn bucket(
        &self,
        session: &Session,
        series: &str,
        metric: &str,
        bucket: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, ReadError> {
        let table = table(self.layout);
        let err = query_error(table);
        let mut merged: BTreeMap<(i64, String, u64), Event> = BTreeMap::new();
        match self.layout {
            Layout::Rows => {
                let (lo, hi) = (from.max(bucket), to.min(bucket.saturating_add(self.bucket_ms)));
                let mut rows = session
                    .execute_iter(
                        self.select.clone(),
                        (series, CqlTimestamp(bucket), metric, CqlTimestamp(lo), CqlTimestamp(hi)),
                    )
                    .await
                    .map_err(|e| err(Box::new(e)))?
                    .rows_stream::<(CqlTimestamp, f64, BTreeMap<String, String>, String, i64)>()
                    .map_err(|e| err(Box::new(e)))?;
                use futures::StreamExt;
                while let Some(row) = rows.next().await {
                    let (CqlTimestamp(ts), value, tags, producer, seq) =
                        row.map_err(|e| err(Box::new(e)))?;
                    let e = Event {
                        series: series.to_owned(),
                        metric: metric.to_owned(),
                        ts,
                        value,
                        tags,
                        producer,
                        seq: seq as u64,
                    };
                    merged.insert((ts, e.producer.clone(), e.seq), e);
                }
            }
            Layout::Blocks => {
                let mut rows = session
                    .execute_iter(
                        self.select.clone(),
                        (
                            series,
                            CqlTimestamp(bucket),
                            metric,
                            CqlTimestamp(from),
                            CqlTimestamp(to),
                        ),
                    )
                    .await
                    .map_err(|e| err(Box::new(e)))?
                    .rows_stream::<(String, i32, i64, CqlTimestamp, CqlTimestamp, Vec<u8>)>()
                    .map_err(|e| err(Box::new(e)))?;
                use futures::StreamExt;
                while let Some(row) = rows.next().await {
                    let (
                        topic,
                        partition,
                        window_start,
                        CqlTimestamp(min_ts),
                        CqlTimestamp(max_ts),
                        data,
                    ) = row.map_err(|e| err(Box::new(e)))?;
                    if max_ts < from || min_ts >= to {
                        continue;
                    }
                    let points = block::decode(series, metric, &data).map_err(|source| {
                        ReadError::Block {
                            series: series.to_owned(),
                            metric: metric.to_owned(),
                            topic,
                            partition,
                            window_start,
                            source,
                        }
                    })?;
                    for e in points.into_iter().filter(|e| e.ts >= from && e.ts < to) {
                        // An identity in two blocks (sent twice by its producer): once.
                        merged.entry((e.ts, e.producer.clone(), e.seq)).or_insert(e);
                    }
                }
            }
        }
        Ok(merged.into_values().collect())
    }
}

fn table(layout: Layout) -> &'static str {
    match layout {
        Layout::Rows => "points",
        Layout::Blocks => "blocks",
    }
}

/// Reads rollups back (blocks layout): the partials stored with the blocks
/// of a series and metric, merged per bucket of one resolution.
#[derive(Clone)]
pub struct RollupReader {
    bucket_ms: i64,
    select: PreparedStatement,
}

/// The rollups of a range: one merged partial per bucket with data, oldest
/// first, and how many blocks in the range carry no partials of the
/// resolution (written before rollups, or with that resolution off): their
/// points are not in the rollups.
#[derive(Debug)]
pub struct Rollups {
    pub buckets: Vec<rollup::Partial>,
    pub blocks_without: u64,
}

impl RollupReader {
    pub async fn prepare(
        session: &Session,
        keyspace: &str,
        pinned: Pinned,
    ) -> Result<RollupReader, ReadError> {
        if pinned.layout != Layout::Blocks {
            return Err(ReadError::NoRollups { layout: pinned.layout });
        }
        let mut select = session
            .prepare(format!(
                "SELECT topic, partition, window_start, min_ts, max_ts, rollups FROM {keyspace}.blocks WHERE series = ? AND bucket = ? AND metric = ?"
            ))
            .await
            .map_err(|e| query_error("blocks")(Box::new(e)))?;
        select.set_consistency(Consistency::LocalQuorum);
        select.set_page_size(5000);
        Ok(RollupReader { bucket_ms: pinned.bucket_ms, select })
    }

    /// The rollup buckets of `resolution_s` that start in
    /// [`from` rounded down to the resolution, `to`).
    pub async fn range(
        &self,
        session: &Session,
        series: &str,
        metric: &str,
        resolution_s: u32,
        from: i64,
        to: i64,
    ) -> Result<Rollups, ReadError> {
        if from >= to {
            return Err(ReadError::EmptyRange { from, to });
        }
        let from = rollup::bucket_of(from, resolution_s);
        let err = query_error("blocks");
        let mut partials = Vec::new();
        let mut blocks_without = 0;
        let mut bucket = from - from.rem_euclid(self.bucket_ms);
        // The last bucket asked for may reach into later block buckets.
        let end = to.saturating_add(i64::from(resolution_s) * 1000);
        while bucket < end {
            let mut rows = session
                .execute_iter(self.select.clone(), (series, CqlTimestamp(bucket), metric))
                .await
                .map_err(|e| err(Box::new(e)))?
                .rows_stream::<(String, i32, i64, CqlTimestamp, CqlTimestamp, Option<Vec<u8>>)>()
                .map_err(|e| err(Box::new(e)))?;
            use futures::StreamExt;
            while let Some(row) = rows.next().await {
                let (
                    topic,
                    partition,
                    window_start,
                    CqlTimestamp(min_ts),
                    CqlTimestamp(max_ts),
                    data,
                ) = row.map_err(|e| err(Box::new(e)))?;
                // A block whose points all lie outside the buckets asked for.
                if max_ts < from || min_ts >= end {
                    continue;
                }
                let (resolutions, decoded) = match data {
                    Some(d) => rollup::decode(&d).map_err(|source| ReadError::Rollups {
                        series: series.to_owned(),
                        metric: metric.to_owned(),
                        topic,
                        partition,
                        window_start,
                        source,
                    })?,
                    None => (Vec::new(), Vec::new()),
                };
                match rollup::at(&resolutions, decoded, resolution_s) {
                    Some(at) => partials
                        .extend(at.into_iter().filter(|p| p.bucket >= from && p.bucket < to)),
                    None => blocks_without += 1,
                }
            }
            bucket += self.bucket_ms;
        }
        Ok(Rollups { buckets: rollup::merge(partials), blocks_without })
    }
}
