//! `herdctl query`: the points of one series and metric, in either layout.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use herd_model::Event;
use herd_sink::read::PointReader;
use herd_telemetry::Exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON array of events (the shape herd ingests).
    Json,
    /// RFC 4180 CSV with a header line; tags as k=v pairs joined by ';'.
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The series, e.g. host-1.
    pub series: String,
    /// The metric, e.g. cpu.
    pub metric: String,
    /// Start of the range, inclusive: RFC 3339 (2026-12-05T10:00:00Z),
    /// milliseconds since the epoch, `now`, or `now-DURATION` (now-1h,
    /// now-15m). Without --from and --to: the latest --limit points.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// End of the range, exclusive; same forms as --from.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// At most this many points: the first ones of a range, or the latest ones.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Cassandra keyspace the workers write to.
    #[arg(long, env = "HERD_KEYSPACE", default_value = "herd")]
    pub keyspace: String,
    /// Aggregates per bucket of this resolution (1m, 1h, ... as in the live
    /// key rollup_resolutions), read from the rollups the workers keep
    /// (blocks layout). Without --from and --to: the last hour.
    #[arg(long, value_name = "DURATION")]
    pub resolution: Option<String>,
    /// Which aggregates, comma-separated: count, sum, avg, min, max, first,
    /// last, and quantiles pNN (p50, p90, p99, p99.9; within 1 % relative
    /// error from rollups, exact with --raw).
    #[arg(
        long,
        value_name = "LIST",
        default_value = "count,sum,avg,min,max,p50,p99",
        requires = "resolution"
    )]
    pub agg: String,
    /// Compute the aggregates from the stored points instead of the rollups
    /// (slower; to cross-check). A (producer, seq) stored twice counts once.
    #[arg(long, requires = "resolution")]
    pub raw: bool,
}

/// One aggregate `--agg` names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    /// A quantile, 0 to 1.
    Quantile(f64),
}

impl Agg {
    fn name(self) -> String {
        match self {
            Agg::Count => "count".into(),
            Agg::Sum => "sum".into(),
            Agg::Avg => "avg".into(),
            Agg::Min => "min".into(),
            Agg::Max => "max".into(),
            Agg::First => "first".into(),
            Agg::Last => "last".into(),
            Agg::Quantile(q) => format!("p{}", q * 100.0),
        }
    }
}

pub fn parse_aggs(text: &str) -> Result<Vec<Agg>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            Ok(match a {
                "count" => Agg::Count,
                "sum" => Agg::Sum,
                "avg" => Agg::Avg,
                "min" => Agg::Min,
                "max" => Agg::Max,
                "first" => Agg::First,
                "last" => Agg::Last,
                _ => match a.strip_prefix('p').and_then(|n| n.parse::<f64>().ok()) {
                    Some(p) if (0.0..=100.0).contains(&p) => Agg::Quantile(p / 100.0),
                    _ => {
                        return Err(format!(
                            "{a:?} is not an aggregate; use count, sum, avg, min, max, first, last or pNN (p50, p99.9)"
                        ))
                    }
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| if v.is_empty() { Err("names no aggregate".into()) } else { Ok(v) })
}

/// One bucket's aggregates.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BucketRow {
    pub bucket: i64,
    pub values: Vec<(String, f64)>,
}

/// A bucket's aggregates from a (merged) rollup partial; `exact` answers
/// quantiles from the points instead of the sketch.
fn bucket_row(p: &herd_sink::rollup::Partial, aggs: &[Agg], exact: Option<&[f64]>) -> BucketRow {
    let values = aggs
        .iter()
        .map(|a| {
            let v = match *a {
                Agg::Count => p.count as f64,
                Agg::Sum => p.sum,
                Agg::Avg => p.avg(),
                Agg::Min => p.min,
                Agg::Max => p.max,
                Agg::First => p.first.value,
                Agg::Last => p.last.value,
                Agg::Quantile(q) => match exact {
                    Some(sorted) => exact_quantile(sorted, q),
                    None => p.quantile(q).unwrap_or(f64::NAN),
                },
            };
            (a.name(), v)
        })
        .collect();
    BucketRow { bucket: p.bucket, values }
}

/// The value at rank floor(q × (n - 1)) of sorted values: the rank the
/// rollups' sketches answer for.
pub fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * (sorted.len() - 1) as f64) as usize).min(sorted.len() - 1)]
}

/// Aggregates computed from points, the way the workers compute rollups: a
/// (producer, seq) counts once (the earliest stored).
pub fn raw_rows(points: Vec<Event>, resolution_s: u32, aggs: &[Agg]) -> Vec<BucketRow> {
    use herd_sink::rollup;
    let mut seen = std::collections::HashSet::new();
    let mut by_bucket: std::collections::BTreeMap<i64, Vec<Event>> = Default::default();
    for e in points {
        if seen.insert((e.producer.clone(), e.seq)) {
            by_bucket.entry(rollup::bucket_of(e.ts, resolution_s)).or_default().push(e);
        }
    }
    by_bucket
        .into_values()
        .flat_map(|events| {
            let mut sorted: Vec<f64> = events.iter().map(|e| e.value).collect();
            sorted.sort_by(f64::total_cmp);
            let points = herd_sink::block::Points::from_events(&events);
            rollup::partials(&points, &[], &[resolution_s])
                .iter()
                .map(|p| bucket_row(p, aggs, Some(&sorted)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Parses a point in time (see `--from`), relative to `now` (ms).
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix("now-") {
        let d = humantime::parse_duration(ago)
            .map_err(|e| format!("{s:?}: {ago:?} is not a duration ({e}); e.g. now-1h, now-15m"))?;
        return Ok(now - d.as_millis() as i64);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is not a time ({e}); use RFC 3339 (2026-12-05T10:00:00Z), ms since the epoch, now or now-1h"))
        .and_then(|t| t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).map_err(|_| format!("{s:?} is before 1970")))
}

pub async fn run(endpoints: &herd_config::Endpoints, args: QueryArgs) -> Result<ExitCode, Exit> {
    if !herd_sink::settings::valid_identifier(&args.keyspace) {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "--keyspace {:?} is not a keyspace name herd uses (letters, digits, underscores)",
            args.keyspace
        )));
    }
    if args.limit == 0 {
        return Err(Exit::BadInput(anyhow::anyhow!("--limit must be at least 1")));
    }
    if let Some(resolution) = &args.resolution {
        return aggregates(endpoints, &args, resolution).await;
    }
    let now = herd_config::now_ms();
    let range = time_range(&args, now)?;
    let (session, pinned) = open_keyspace(endpoints, &args.keyspace).await?;
    let reader = PointReader::prepare(&session, &args.keyspace, pinned)
        .await
        .context("while preparing the query")?;
    let points = match range {
        Some((from, to)) => {
            let mut p = reader
                .range(&session, &args.series, &args.metric, from, to)
                .await
                .context("while reading points")?;
            p.truncate(args.limit);
            p
        }
        None => reader
            .latest(&session, &args.series, &args.metric, args.limit, now)
            .await
            .context("while reading points")?,
    };
    let mut out = std::io::stdout().lock();
    print(&mut out, &points, args.format).context("while writing the points")?;
    if args.format == Format::Table {
        let what = match range {
            Some(_) => "in the range, oldest first",
            None => "latest, newest first",
        };
        writeln!(out, "{} points {what} (layout {})", points.len(), pinned.layout)
            .context("while writing")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--resolution`: aggregates per bucket, from the rollups or (--raw) the points.
async fn aggregates(
    endpoints: &herd_config::Endpoints,
    args: &QueryArgs,
    resolution: &str,
) -> Result<ExitCode, Exit> {
    let bad = |e: String| Exit::BadInput(anyhow::anyhow!(e));
    let resolutions = herd_coord::dynconf::keys::parse_resolutions("--resolution", resolution)
        .map_err(|e| bad(e.to_string()))?;
    let [resolution_s] = resolutions[..] else {
        return Err(bad(format!("--resolution {resolution:?}: give one duration, e.g. 1m")));
    };
    let aggs = parse_aggs(&args.agg).map_err(|e| bad(format!("--agg {e}")))?;
    let now = herd_config::now_ms();
    let (from, to) = time_range(args, now)?.unwrap_or((now - 3_600_000, now));
    let (session, pinned) = open_keyspace(endpoints, &args.keyspace).await?;
    let (rows, note) = if args.raw {
        let from = herd_sink::rollup::bucket_of(from, resolution_s);
        let reader = PointReader::prepare(&session, &args.keyspace, pinned)
            .await
            .context("while preparing the query")?;
        let points = reader
            .range(&session, &args.series, &args.metric, from, to)
            .await
            .context("while reading points")?;
        let n = points.len();
        (raw_rows(points, resolution_s, &aggs), format!("computed from {n} stored points"))
    } else {
        let reader = herd_sink::read::RollupReader::prepare(&session, &args.keyspace, pinned)
            .await
            .map_err(|e| match e {
                herd_sink::read::ReadError::NoRollups { .. } => {
                    Exit::BadInput(anyhow::Error::new(e))
                }
                e => Exit::Failed(anyhow::Error::new(e).context("while preparing the query")),
            })?;
        let r = reader
            .range(&session, &args.series, &args.metric, resolution_s, from, to)
            .await
            .context("while reading rollups")?;
        let rows = r.buckets.iter().map(|p| bucket_row(p, &aggs, None)).collect();
        let note = if r.blocks_without > 0 {
            format!("from rollups; {} blocks in the range carry no {resolution} rollups (written before rollups or with them off): their points are missing here, --raw counts them", r.blocks_without)
        } else {
            "from rollups".to_owned()
        };
        (rows, note)
    };
    let mut out = std::io::stdout().lock();
    print_rows(&mut out, &rows, &aggs, args.format).context("while writing the aggregates")?;
    if args.format == Format::Table {
        writeln!(out, "{} buckets of {resolution}, {note}", rows.len()).context("while writing")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_rows(
    out: &mut impl Write,
    rows: &[BucketRow],
    aggs: &[Agg],
    format: Format,
) -> anyhow::Result<()> {
    let names: Vec<String> = aggs.iter().map(|a| a.name()).collect();
    match format {
        Format::Table => {
            write!(out, "{:<24}", "BUCKET")?;
            for n in &names {
                write!(out, "  {:>14}", n.to_uppercase())?;
            }
            writeln!(out)?;
            for r in rows {
                write!(out, "{:<24}", rfc3339(r.bucket))?;
                for (_, v) in &r.values {
                    write!(
                        out,
                        "  {:>14}",
                        format!("{v:.6}").trim_end_matches('0').trim_end_matches('.')
                    )?;
                }
                writeln!(out)?;
            }
        }
        Format::Json => {
            let json: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut o = serde_json::Map::new();
                    o.insert("bucket".into(), rfc3339(r.bucket).into());
                    o.insert("bucket_ms".into(), r.bucket.into());
                    for (n, v) in &r.values {
                        o.insert(
                            n.clone(),
                            serde_json::Number::from_f64(*v)
                                .map_or(serde_json::Value::Null, Into::into),
                        );
                    }
                    o.into()
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &json)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut header = vec!["bucket".to_owned(), "bucket_ms".to_owned()];
            header.extend(names);
            w.write_record(&header)?;
            for r in rows {
                let mut rec = vec![rfc3339(r.bucket), r.bucket.to_string()];
                rec.extend(r.values.iter().map(|(_, v)| v.to_string()));
                w.write_record(&rec)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// `--from` and `--to`, checked: None when neither is given.
fn time_range(args: &QueryArgs, now: i64) -> Result<Option<(i64, i64)>, Exit> {
    let (Some(from), Some(to)) = (&args.from, &args.to) else { return Ok(None) };
    let bad = |e: String| Exit::BadInput(anyhow::anyhow!(e));
    let from = parse_time(from, now).map_err(|e| bad(format!("--from {e}")))?;
    let to = parse_time(to, now).map_err(|e| bad(format!("--to {e}")))?;
    if from >= to {
        return Err(bad(format!("--from ({from}) must be before --to ({to})")));
    }
    Ok(Some((from, to)))
}

/// A session and the keyspace's pinned settings (its layout and bucket).
async fn open_keyspace(
    endpoints: &herd_config::Endpoints,
    keyspace: &str,
) -> Result<(scylla::client::session::Session, herd_sink::schema::Pinned), Exit> {
    let session = herd_clients::cassandra::session(endpoints)
        .await
        .context("while connecting to Cassandra")?;
    let pinned = herd_sink::schema::pinned(&session, keyspace)
        .await
        .with_context(|| format!("while reading {keyspace}.herd_settings (is --keyspace right?)"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "keyspace {keyspace} has no herd settings: no worker has written to it yet"
            )
        })?;
    Ok((session, pinned))
}

fn rfc3339(ms: i64) -> String {
    if ms < 0 {
        return ms.to_string();
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

fn tags(e: &Event) -> String {
    e.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
}

pub fn print(out: &mut impl Write, points: &[Event], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            writeln!(
                out,
                "{:<24}  {:>20}  {:<16}  {:>12}  TAGS",
                "TS", "VALUE", "PRODUCER", "SEQ"
            )?;
            for e in points {
                writeln!(
                    out,
                    "{:<24}  {:>20}  {:<16}  {:>12}  {}",
                    rfc3339(e.ts),
                    e.value,
                    e.producer,
                    e.seq,
                    tags(e)
                )?;
            }
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, points)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["ts", "ts_ms", "value", "producer", "seq", "tags"])?;
            for e in points {
                w.write_record([
                    rfc3339(e.ts),
                    e.ts.to_string(),
                    e.value.to_string(),
                    e.producer.clone(),
                    e.seq.to_string(),
                    tags(e),
                ])?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_in_every_documented_form() {
        let now = 1_764_928_800_000; // 2025-12-05T10:00:00Z
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("now-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("now-15m", now), Ok(now - 900_000));
        assert_eq!(parse_time("1764928800000", now), Ok(now));
        assert_eq!(parse_time("2025-12-05T10:00:00Z", now), Ok(now));
        assert_eq!(parse_time("2025-12-05T10:00:00.250Z", now), Ok(now + 250));
        assert!(parse_time("yesterday", now).unwrap_err().contains("is not a time"));
        assert!(parse_time("now-soon", now).unwrap_err().contains("is not a duration"));
    }

    #[test]
    fn prints_table_json_and_csv() {
        let e = Event {
            series: "s".into(),
            metric: "m".into(),
            ts: 1_764_928_800_250,
            value: 1.5,
            tags: [("dc".to_owned(), "eu,1".to_owned())].into(),
            producer: "p".into(),
            seq: 7,
        };
        let text = |f| {
            let mut out = Vec::new();
            print(&mut out, std::slice::from_ref(&e), f).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(text(Format::Table).contains("2025-12-05T10:00:00.250Z"));
        let json: Vec<Event> = serde_json::from_str(&text(Format::Json)).unwrap();
        assert_eq!(json, vec![e.clone()]);
        assert_eq!(text(Format::Csv), "ts,ts_ms,value,producer,seq,tags\n2025-12-05T10:00:00.250Z,1764928800250,1.5,p,7,\"dc=eu,1\"\n");
    }
}
