//! `herd-loadgen verify` against the real Cassandra: it passes on an exact
//! set, and fails when a row is deleted or a duplicate is injected.

use herd_testkit::{endpoints, unique_name};

fn loadgen(args: &[&str]) -> (i32, String, String) {
    herd_testkit::herd::run("herd-loadgen", args)
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_fails_on_a_deleted_row_and_on_an_injected_duplicate() {
    let ks = unique_name("verify");
    // Rows written straight to Cassandra, as herd-worker writes them.
    let (code, _, err) = loadgen(&[
        "ceiling",
        "--keyspace",
        &ks,
        "--events",
        "3000",
        "--producer-id",
        "vp",
        "--bucket-secs",
        "3600",
    ]);
    assert_eq!(code, 0, "{err}");
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--keyspace", &ks, "--expect", "vp=3000"];
        args.extend_from_slice(extra);
        loadgen(&args)
    };
    let (code, out, err) = verify(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verdict: OK"), "{out}");

    let session = herd_clients::cassandra::session(&endpoints()).await.expect("session");
    let key = |seq: i64| {
        let session = &session;
        let ks = ks.clone();
        async move {
            session
                .query_unpaged(format!("SELECT series, bucket, metric, ts FROM {ks}.points WHERE producer = 'vp' AND seq = ? ALLOW FILTERING"), (seq,))
                .await
                .unwrap()
                .into_rows_result()
                .unwrap()
                .first_row::<(String, scylla::value::CqlTimestamp, String, scylla::value::CqlTimestamp)>()
                .unwrap()
        }
    };
    // One row deleted: missing.
    let (series, bucket, metric, ts) = key(1234).await;
    session
        .query_unpaged(
            format!("DELETE FROM {ks}.points WHERE series = ? AND bucket = ? AND metric = ? AND ts = ? AND producer = 'vp' AND seq = 1234"),
            (&series, bucket, &metric, ts),
        )
        .await
        .unwrap();
    let (code, out, _) = verify(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("missing seq: 1234"), "{out}");

    // One event stored twice (under another timestamp): duplicated.
    let (series, bucket, metric, ts) = key(42).await;
    session
        .query_unpaged(
            format!("INSERT INTO {ks}.points (series, bucket, metric, ts, producer, seq, value) VALUES (?, ?, ?, ?, 'vp', 42, 1.0)"),
            (&series, bucket, &metric, scylla::value::CqlTimestamp(ts.0 + 1)),
        )
        .await
        .unwrap();
    let (code, out, _) = verify(&["--json"]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let p = &report["producers"][0];
    assert_eq!((p["missing"].as_u64(), p["duplicated"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(p["duplicated_examples"][0], serde_json::json!([42, 2]));
    assert_eq!(report["ok"], false);

    session.query_unpaged(format!("DROP KEYSPACE {ks}"), &[]).await.unwrap();
}
