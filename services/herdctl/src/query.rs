//! `herdctl query`: the points of one series and metric, in either layout.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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
    let now = now_ms();
    let range = match (&args.from, &args.to) {
        (Some(from), Some(to)) => {
            let from =
                parse_time(from, now).map_err(|e| Exit::BadInput(anyhow::anyhow!("--from {e}")))?;
            let to =
                parse_time(to, now).map_err(|e| Exit::BadInput(anyhow::anyhow!("--to {e}")))?;
            if from >= to {
                return Err(Exit::BadInput(anyhow::anyhow!(
                    "--from ({from}) must be before --to ({to})"
                )));
            }
            Some((from, to))
        }
        _ => None,
    };
    let session = herd_clients::cassandra::session(endpoints)
        .await
        .context("while connecting to Cassandra")?;
    let pinned = herd_sink::schema::pinned(&session, &args.keyspace)
        .await
        .with_context(|| {
            format!("while reading {}.herd_settings (is --keyspace right?)", args.keyspace)
        })?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "keyspace {} has no herd settings: no worker has written to it yet",
                args.keyspace
            )
        })?;
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
