//! `herdctl config`: read, change, compare, roll back the live configuration.
//! Every change is validated before anything is written, and written with a
//! compare-and-set on the version, so a concurrent edit is reported, never
//! merged.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use herd_coord::dynconf::{self, ConfigDoc, StoreError};
use herd_telemetry::{BadInput, Exit};

#[derive(Subcommand)]
pub enum Action {
    /// Print the current document and its version.
    Get {
        /// The document as JSON (what `apply` takes) instead of key=value lines.
        #[arg(long)]
        json: bool,
    },
    /// Change keys: `batch_max_rows=10000`, `topic.events.paused=true`,
    /// `shard.events:3.rate_limit_eps=500`; an empty value removes a key.
    /// `herdctl config keys` lists them.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        edits: Vec<String>,
        /// Refuse unless the stored version is this one.
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// Replace the whole document with FILE (JSON, as `get --json` prints).
    Apply {
        file: PathBuf,
        /// Refuse unless the stored version is this one.
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// Show what applying FILE would change, or what changed since VERSION.
    Diff {
        #[arg(required_unless_present = "since", conflicts_with = "since")]
        file: Option<PathBuf>,
        /// Compare this earlier version with the current one instead.
        #[arg(long, value_name = "VERSION")]
        since: Option<u64>,
    },
    /// List every version: when, by whom, what changed.
    History,
    /// Make an earlier version's document the current one (as a new version).
    Rollback { version: u64 },
    /// Which configuration version each registered worker runs.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Every key: scope, unit, default, allowed range, when a change applies.
    Keys {
        /// `table` for people, `markdown` as the README has it.
        #[arg(long, value_enum, default_value_t = KeysFormat::Table)]
        format: KeysFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeysFormat {
    Table,
    Markdown,
}

/// The keys as `herdctl config keys` prints them.
pub fn keys_table(format: KeysFormat) -> String {
    use herd_coord::dynconf::keys;
    match format {
        KeysFormat::Markdown => keys::markdown_table(),
        KeysFormat::Table => {
            let rows: Vec<[String; 6]> = keys::LIVE_KEYS
                .iter()
                .map(|k| {
                    [
                        k.name.to_owned(),
                        k.scope.describe().to_owned(),
                        k.unit.to_owned(),
                        k.default_text().replace('`', ""),
                        k.range_text().replace('`', ""),
                        format!("{}. Applies {}.", k.meaning, k.applies),
                    ]
                })
                .collect();
            let header = ["KEY", "SCOPE", "UNIT", "DEFAULT", "RANGE", "MEANING"].map(String::from);
            let widths: Vec<usize> = (0..5)
                .map(|i| {
                    rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)
                })
                .collect();
            let mut out = String::new();
            for r in std::iter::once(&header).chain(&rows) {
                for (cell, w) in r.iter().zip(&widths) {
                    out.push_str(&format!("{cell:<w$}  "));
                }
                out.push_str(&r[5]);
                out.push('\n');
            }
            out
        }
    }
}

fn author() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{user}@{host}")
}

fn read_file(file: &PathBuf) -> Result<ConfigDoc, Exit> {
    let data = std::fs::read(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .bad_input()?;
    ConfigDoc::parse(&data).with_context(|| format!("{} is refused", file.display())).bad_input()
}

/// Writes `doc` over `base_version`, mapping a conflict to a clear failure.
async fn store(
    zk: &zookeeper_client::Client,
    root: &str,
    doc: &ConfigDoc,
    base_version: u64,
    change: &str,
) -> Result<u64, Exit> {
    match dynconf::write(zk, root, doc, base_version, &author(), change).await {
        Ok(v) => Ok(v),
        Err(e @ StoreError::Conflict { .. }) => Err(Exit::Failed(e.into())),
        Err(e) => {
            Err(Exit::Failed(anyhow::Error::new(e).context("while writing the configuration")))
        }
    }
}

fn check_expected(expect: Option<u64>, current: u64) -> Result<(), Exit> {
    match expect {
        Some(v) if v != current => {
            Err(Exit::Failed(StoreError::Conflict { expected: v, current }.into()))
        }
        _ => Ok(()),
    }
}

pub async fn run(
    endpoints: &herd_config::Endpoints,
    root: &str,
    action: Action,
) -> Result<ExitCode, Exit> {
    if let Action::Keys { format } = action {
        print!("{}", keys_table(format));
        return Ok(ExitCode::SUCCESS);
    }
    // Validate what can be validated before connecting to anything.
    if let Action::Set { edits, .. } = &action {
        ConfigDoc::default().with_edits(edits).bad_input()?;
    }
    let file_doc = match &action {
        Action::Apply { file, .. } | Action::Diff { file: Some(file), .. } => {
            Some(read_file(file)?)
        }
        _ => None,
    };
    let zk = herd_clients::zookeeper::connect(endpoints, std::time::Duration::from_secs(6))
        .await
        .context("while connecting to ZooKeeper")?;
    let result = act(&zk, root, action, file_doc).await;
    herd_clients::zookeeper::close(zk, std::time::Duration::from_secs(2)).await;
    result
}

async fn act(
    zk: &zookeeper_client::Client,
    root: &str,
    action: Action,
    file_doc: Option<ConfigDoc>,
) -> Result<ExitCode, Exit> {
    let stored = dynconf::read(zk, root).await.context("while reading the configuration")?;
    // A hand-written broken document must not block a fix: edits start from an empty one.
    let current = match stored.doc() {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("herdctl: warning: the stored version {} is invalid ({e}); workers keep their last good configuration", stored.version);
            ConfigDoc::default()
        }
    };
    match action {
        Action::Keys { .. } => unreachable!("handled before connecting"),
        Action::Get { json } => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&current).context("while encoding JSON")?
                );
            } else {
                println!("version {}", stored.version);
                for (k, v) in current.flatten() {
                    println!("{k}={v}");
                }
            }
        }
        Action::Set { edits, expect_version } => {
            check_expected(expect_version, stored.version)?;
            let next = current.with_edits(&edits).bad_input()?;
            if next == current && stored.doc().is_ok() {
                println!("unchanged: version {}", stored.version);
                return Ok(ExitCode::SUCCESS);
            }
            let v =
                store(zk, root, &next, stored.version, &format!("set {}", edits.join(" "))).await?;
            println!("version {v}");
            for line in dynconf::diff(&current, &next) {
                println!("  {line}");
            }
        }
        Action::Apply { file, expect_version } => {
            check_expected(expect_version, stored.version)?;
            let next = file_doc.expect("read before connecting");
            let v = store(zk, root, &next, stored.version, &format!("apply {}", file.display()))
                .await?;
            println!("version {v}");
            for line in dynconf::diff(&current, &next) {
                println!("  {line}");
            }
        }
        Action::Diff { file: _, since } => {
            let (old, new) = match since {
                Some(version) => (earlier(zk, root, version).await?, current),
                None => (current, file_doc.expect("read before connecting")),
            };
            for line in dynconf::diff(&old, &new) {
                println!("{line}");
            }
        }
        Action::History => {
            for e in dynconf::history(zk, root).await.context("while reading the history")? {
                println!("v{:<5} {:<24} {:<20} {}", e.version, format_ms(e.at_ms), e.by, e.change);
            }
        }
        Action::Rollback { version } => {
            let old = earlier(zk, root, version).await?;
            let v = store(zk, root, &old, stored.version, &format!("rollback {version}")).await?;
            println!("version {v} (the document of version {version})");
            for line in dynconf::diff(&current, &old) {
                println!("  {line}");
            }
        }
        Action::Status { json } => {
            let workers = herd_coord::membership::workers(zk, root)
                .await
                .context("while reading the workers")?;
            if json {
                let out = serde_json::json!({ "version": stored.version, "workers": workers });
                println!("{}", serde_json::to_string_pretty(&out).context("while encoding JSON")?);
            } else {
                println!("stored version {}", stored.version);
                for w in &workers {
                    let mark =
                        if w.config_version == stored.version { "current" } else { "BEHIND" };
                    println!("  {:<24} v{:<6} {mark}", w.id, w.config_version);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An earlier version's document; an unknown version is bad input.
async fn earlier(
    zk: &zookeeper_client::Client,
    root: &str,
    version: u64,
) -> Result<ConfigDoc, Exit> {
    dynconf::version_doc(zk, root, version)
        .await
        .context("while reading the history")?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "version {version} is not in the history (herdctl config history lists them)"
            )
        })
        .bad_input()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's copy of the keys table sits between these lines.
    const README_KEYS_START: &str = "<!-- live keys: `herdctl config keys --format markdown` writes this table; a test fails when it differs -->\n";
    const README_KEYS_END: &str = "<!-- end of live keys -->";

    #[test]
    fn formats_dates() {
        assert_eq!(super::format_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::format_ms(1_795_285_590_000), "2026-11-21 18:26:30 UTC");
    }

    #[test]
    fn the_readme_has_the_generated_table_of_live_keys() {
        let readme = include_str!("../../../README.md");
        let start = readme.find(README_KEYS_START).expect("the README marks its keys table")
            + README_KEYS_START.len();
        let end = start + readme[start..].find(README_KEYS_END).expect("and where it ends");
        assert_eq!(
            &readme[start..end],
            keys_table(KeysFormat::Markdown),
            "the README's keys table differs from the table of live keys: \
             paste `herdctl config keys --format markdown` between its markers"
        );
    }

    #[test]
    fn the_text_table_lists_every_key_with_its_range() {
        let text = keys_table(KeysFormat::Table);
        for k in herd_coord::dynconf::LIVE_KEYS {
            let line = text.lines().find(|l| l.starts_with(k.name)).expect(k.name);
            assert!(line.contains(&k.range_text().replace('`', "")), "{line}");
        }
    }
}
