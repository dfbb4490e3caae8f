//! Versioned schema migrations. Each runs once per keyspace, in order, and
//! is recorded in `herd_migrations`; every statement is idempotent (`IF NOT
//! EXISTS`, or a column added only if missing), so a migration interrupted
//! half-way is simply run again.
//!
//! Only one process should run them at a time: concurrent `CREATE TABLE IF
//! NOT EXISTS` of the same table on a multi-node cluster can create it twice
//! with different ids and leave the nodes disagreeing on the schema. The
//! worker runs [`migrate`] under a ZooKeeper lock (herd-coord's `schema`);
//! the others check with [`up_to_date`] and [`check_settings`] without DDL.

use scylla::client::session::Session;
use scylla::response::query_result::QueryRowsResult;
use scylla::serialize::row::SerializeRow;
use scylla::value::CqlTimestamp;

use crate::{CqlError, Layout, SinkError, SinkSettings};

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    statements: fn(&SinkSettings) -> Vec<Step>,
}

/// One statement of a migration, idempotent either way.
enum Step {
    /// CQL that is idempotent by itself (`IF NOT EXISTS`).
    Cql(String),
    /// Adds a column unless the table has it. (Cassandra 5 has `ADD IF NOT
    /// EXISTS`; ScyllaDB and older Cassandra do not, so the schema is asked.)
    AddColumn { table: &'static str, column: &'static str, cql_type: &'static str },
}

/// The migrations, oldest first. Never edit one that has shipped; add a new one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "points table",
        statements: |s| {
            let ks = &s.keyspace;
            vec![
            Step::Cql(format!("CREATE TABLE IF NOT EXISTS {ks}.herd_settings (name text PRIMARY KEY, value text)")),
            // Partition: one series for one time bucket, so that a time-range
            // read touches few partitions and no partition grows forever.
            // Clustering: metric first (a read asks for one metric), newest
            // first (the latest N points are the head of the partition), then
            // the event identity, so two events never share a row and a replayed
            // event overwrites its own row. tags is frozen: writing a
            // non-frozen collection writes a tombstone first, on every insert.
            Step::Cql(format!(
                "CREATE TABLE IF NOT EXISTS {ks}.points (
                    series text,
                    bucket timestamp,
                    metric text,
                    ts timestamp,
                    producer text,
                    seq bigint,
                    value double,
                    tags frozen<map<text, text>>,
                    PRIMARY KEY ((series, bucket), metric, ts, producer, seq)
                ) WITH CLUSTERING ORDER BY (metric ASC, ts DESC, producer ASC, seq ASC)
                  AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                                     'compaction_window_unit': 'DAYS',
                                     'compaction_window_size': 1}}"
            )),
        ]
        },
    },
    Migration {
        version: 2,
        name: "shard checkpoints",
        statements: |s| {
            // One row per shard: the owner's fencing epoch and its checkpoint.
            // Written only by lightweight transactions (see fencing.rs).
            vec![Step::Cql(format!(
                "CREATE TABLE IF NOT EXISTS {}.shard_checkpoints (
                topic text,
                partition int,
                epoch bigint,
                owner text,
                next_offset bigint,
                updated_at timestamp,
                PRIMARY KEY ((topic, partition))
            )",
                s.keyspace
            ))]
        },
    },
    Migration {
        version: 3,
        name: "blocks table",
        statements: |s| {
            // The blocks layout (blocks.rs): a partition per series and time
            // bucket, as in points; clustering by metric, then the shard and
            // window that produced the block, so a rewrite of a window hits the
            // same row. Created in every keyspace; which table is used is
            // pinned in herd_settings (layout).
            vec![Step::Cql(format!(
                "CREATE TABLE IF NOT EXISTS {}.blocks (
                series text,
                bucket timestamp,
                metric text,
                topic text,
                partition int,
                window_start bigint,
                points int,
                min_ts timestamp,
                max_ts timestamp,
                messages int,
                data blob,
                PRIMARY KEY ((series, bucket), metric, topic, partition, window_start)
            ) WITH compaction = {{'class': 'TimeWindowCompactionStrategy',
                                  'compaction_window_unit': 'DAYS',
                                  'compaction_window_size': 1}}",
                s.keyspace
            ))]
        },
    },
    Migration {
        version: 4,
        name: "open window in checkpoints",
        // Blocks layout: where the offset window open at a checkpoint starts
        // (fencing.rs), so that the next reader cuts the same windows.
        statements: |_| {
            vec![Step::AddColumn {
                table: "shard_checkpoints",
                column: "window_start",
                cql_type: "bigint",
            }]
        },
    },
    Migration {
        version: 5,
        name: "rollups",
        // Each block carries the rollup partials of its points (rollup.rs),
        // and each checkpoint the shard's de-duplication memory as it was at
        // the offset the next reader starts from (herd-ingest's dedup).
        statements: |_| {
            vec![
                Step::AddColumn { table: "blocks", column: "rollups", cql_type: "blob" },
                Step::AddColumn { table: "shard_checkpoints", column: "dedup", cql_type: "blob" },
            ]
        },
    },
];

/// Creates the keyspace if missing, applies the migrations it lacks, and
/// checks that settings fixed at creation (the bucket size, the layout) are
/// unchanged.
/// Returns the versions applied now.
pub async fn migrate(session: &Session, settings: &SinkSettings) -> Result<Vec<i32>, SinkError> {
    let ks = &settings.keyspace;
    let fail = |m: &Migration, e: CqlError| SinkError::Migration {
        version: m.version,
        name: m.name,
        source: e,
    };
    let bootstrap =
        Migration { version: 0, name: "keyspace and migration log", statements: |_| Vec::new() };
    for statement in [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}",
            settings.replication.cql()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.herd_migrations (version int PRIMARY KEY, name text, applied_at timestamp)"
        ),
    ] {
        session
            .query_unpaged(statement, &[])
            .await
            .map_err(|e| fail(&bootstrap, e.into()))?;
    }
    session.await_schema_agreement().await.map_err(|e| fail(&bootstrap, e.into()))?;

    let applied = applied_versions(session, ks).await.map_err(|e| fail(&bootstrap, e))?;

    let mut now_applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for step in (m.statements)(settings) {
            match step {
                Step::Cql(cql) => {
                    session.query_unpaged(cql, &[]).await.map_err(|e| fail(m, e.into()))?;
                }
                Step::AddColumn { table, column, cql_type } => {
                    if !has_column(session, ks, table, column).await.map_err(|e| fail(m, e))? {
                        let added = session
                            .query_unpaged(
                                format!("ALTER TABLE {ks}.{table} ADD {column} {cql_type}"),
                                &[],
                            )
                            .await;
                        // Another process may have added it meanwhile: then
                        // the statement fails, and the column is there.
                        if let Err(e) = added {
                            session
                                .await_schema_agreement()
                                .await
                                .map_err(|e| fail(m, e.into()))?;
                            if !has_column(session, ks, table, column)
                                .await
                                .map_err(|e| fail(m, e))?
                            {
                                return Err(fail(m, e.into()));
                            }
                        }
                    }
                    // Added by another process just now, the column can be in
                    // the schema tables before queries may name it.
                    usable_column(session, ks, table, column).await.map_err(|e| fail(m, e))?;
                }
            }
        }
        session.await_schema_agreement().await.map_err(|e| fail(m, e.into()))?;
        let now = CqlTimestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        );
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {ks}.herd_migrations (version, name, applied_at) VALUES (?, ?, ?)"
                ),
                (m.version, m.name, now),
            )
            .await
            .map_err(|e| fail(m, e.into()))?;
        tracing::info!(keyspace = %ks, version = m.version, name = m.name, "applied schema migration");
        now_applied.push(m.version);
    }
    // Keyspaces made before layouts existed hold rows: pin that first.
    if applied.contains(&1) {
        check_fixed_setting(session, settings, "layout", "layout", Layout::Rows.as_str(), &|v| {
            v.to_owned()
        })
        .await
        .ok();
    }
    check_settings(session, settings).await?;
    Ok(now_applied)
}

/// The newest migration's version: a keyspace is up to date once it has
/// every migration up to this one.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Whether the keyspace has every migration applied (false if it does not
/// exist yet), once the nodes agree on the schema. No DDL.
pub async fn up_to_date(session: &Session, keyspace: &str) -> Result<bool, SinkError> {
    let fail = |source: CqlError| SinkError::Migration {
        version: 0,
        name: "reading the migration log",
        source,
    };
    session.await_schema_agreement().await.map_err(|e| fail(e.into()))?;
    let log = rows(
        session,
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'herd_migrations'".into(),
        (keyspace,),
    )
    .await
    .map_err(fail)?;
    if log.rows_num() == 0 {
        return Ok(false);
    }
    let applied = applied_versions(session, keyspace).await.map_err(fail)?;
    Ok(MIGRATIONS.iter().all(|m| applied.contains(&m.version)))
}

/// The versions recorded in the keyspace's migration log.
async fn applied_versions(session: &Session, keyspace: &str) -> Result<Vec<i32>, CqlError> {
    Ok(rows(session, format!("SELECT version FROM {keyspace}.herd_migrations"), ())
        .await?
        .rows::<(i32,)>()?
        .map(|r| r.map(|(v,)| v))
        .collect::<Result<_, _>>()?)
}

/// Checks that the settings fixed when the keyspace was made (the bucket
/// size, the layout) are this process's, recording them on first use.
pub async fn check_settings(session: &Session, settings: &SinkSettings) -> Result<(), SinkError> {
    check_fixed_setting(
        session,
        settings,
        "bucket_ms",
        "bucket-secs",
        &settings.bucket_ms.to_string(),
        &|v| v.parse::<i64>().map(|v| (v / 1000).to_string()).unwrap_or_else(|_| v.to_owned()),
    )
    .await?;
    check_fixed_setting(session, settings, "layout", "layout", settings.layout.as_str(), &|v| {
        v.to_owned()
    })
    .await
}

/// Records `value` for `name` on first use (a lightweight transaction, so two
/// processes cannot both win) and fails if an earlier value differs.
async fn check_fixed_setting(
    session: &Session,
    settings: &SinkSettings,
    name: &'static str,
    flag: &'static str,
    value: &str,
    in_flag_unit: &dyn Fn(&str) -> String,
) -> Result<(), SinkError> {
    let ks = &settings.keyspace;
    let fail =
        |source: CqlError| SinkError::Migration { version: 1, name: "fixed settings", source };
    let result = rows(
        session,
        format!("INSERT INTO {ks}.herd_settings (name, value) VALUES (?, ?) IF NOT EXISTS"),
        (name, value),
    )
    .await
    .map_err(fail)?;
    // An applied LWT returns only [applied]; a refused one adds the existing row.
    if result.column_specs().len() == 1 {
        return Ok(());
    }
    let (_, _, stored) =
        result.first_row::<(bool, Option<String>, Option<String>)>().map_err(|e| fail(e.into()))?;
    let stored = stored.unwrap_or_default();
    if stored == value {
        return Ok(());
    }
    Err(SinkError::SettingChanged {
        keyspace: ks.clone(),
        name: flag,
        flag,
        stored: in_flag_unit(&stored),
        configured: in_flag_unit(value),
    })
}

async fn has_column(
    session: &Session,
    keyspace: &str,
    table: &str,
    column: &str,
) -> Result<bool, CqlError> {
    let found = rows(
        session,
        "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?".into(),
        (keyspace, table, column),
    )
    .await?;
    Ok(found.rows_num() > 0)
}

/// Waits (up to 10 s) until a query may name the column.
async fn usable_column(
    session: &Session,
    keyspace: &str,
    table: &str,
    column: &str,
) -> Result<(), CqlError> {
    let started = std::time::Instant::now();
    loop {
        match session
            .query_unpaged(format!("SELECT {column} FROM {keyspace}.{table} LIMIT 1"), &[])
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > std::time::Duration::from_secs(10) => {
                return Err(e.into())
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// Runs a statement that returns rows.
async fn rows(
    session: &Session,
    cql: String,
    values: impl SerializeRow,
) -> Result<QueryRowsResult, CqlError> {
    Ok(session.query_unpaged(cql, values).await?.into_rows_result()?)
}

/// What a keyspace's workers pinned when they created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub bucket_ms: i64,
    pub layout: Layout,
}

/// Reads the settings pinned in `keyspace.herd_settings`, for readers
/// (herdctl, herd-loadgen) that must use the same bucket width and layout as
/// the workers. None: no worker has migrated the keyspace yet.
pub async fn pinned(session: &Session, keyspace: &str) -> Result<Option<Pinned>, SinkError> {
    let fail = |source: CqlError| SinkError::Migration {
        version: 0,
        name: "reading herd_settings",
        source,
    };
    let unreadable = |name: &str, value: &str| SinkError::UnreadableSetting {
        keyspace: keyspace.to_owned(),
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let result = rows(session, format!("SELECT name, value FROM {keyspace}.herd_settings"), ())
        .await
        .map_err(fail)?;
    let mut bucket_ms = None;
    // Keyspaces made before layouts existed hold rows.
    let mut layout = Layout::Rows;
    for row in result.rows::<(String, Option<String>)>().map_err(|e| fail(e.into()))? {
        let (name, value) = row.map_err(|e| fail(e.into()))?;
        let value = value.unwrap_or_default();
        match name.as_str() {
            "bucket_ms" => {
                bucket_ms = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|&b| b > 0)
                        .ok_or_else(|| unreadable(&name, &value))?,
                )
            }
            "layout" => layout = value.parse().map_err(|_| unreadable(&name, &value))?,
            _ => {}
        }
    }
    Ok(bucket_ms.map(|bucket_ms| Pinned { bucket_ms, layout }))
}
