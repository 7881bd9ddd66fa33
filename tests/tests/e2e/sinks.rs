//! The relay's time-series and PostgreSQL sinks against the real stores,
//! each on a free loopback port: batches posted over HTTP to the relay
//! in-process, read back with the store's own query language.
//!
//! - InfluxDB 1.x (`influxd`) with the default layout, read with InfluxQL.
//! - VictoriaMetrics with a non-default layout (own measurement, series tag
//!   and value field, no gateway tag, quality as a field), read with its
//!   export API.
//! - Kafka (librdkafka's mock cluster) + VictoriaMetrics + PostgreSQL at
//!   once: all three hold a batch before the 2xx; with PostgreSQL cut off the
//!   relay answers 503, no acknowledged batch is missing from Kafka, and
//!   after PostgreSQL is back the retried batch is in it once.
//!
//! What is expected is computed from the batches the test builds, never
//! from the relay's output.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use edge_relay::{Relay, RelayConfig};
use edge_tests::{Influxd, Victoria};
use edge_wire::{Batch, Point, Quality, Series};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "sinks-gw";
const TOKEN: &str = "sinks-token-0123456789";

fn now_us() -> i64 {
    edge_agent::reading::now_us()
}

/// Two series of `n` readings one second apart from `t0`; values
/// `20 + i/4` and `1 + i/8`; every third reading of the first is uncertain.
fn batch(seq: u64, t0: i64, n: usize) -> Batch {
    let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let points = |f: &dyn Fn(usize) -> (f64, Quality)| -> Vec<Point> {
        (0..n)
            .map(|i| {
                let (value, quality) = f(i);
                Point {
                    ts_us: t0 + i as i64 * 1_000_000,
                    value,
                    quality,
                }
            })
            .collect()
    };
    Batch {
        gateway_id: GATEWAY.into(),
        instance: None,
        seq,
        created_us: t0,
        series: vec![
            Series {
                id: 1,
                name: "line-1.temp".into(),
                unit: "degC".into(),
                tags: tags(&[("site", "plant a")]),
                points: points(&|i| {
                    let q = if i % 3 == 2 {
                        Quality::Uncertain
                    } else {
                        Quality::Good
                    };
                    (20.0 + i as f64 / 4.0, q)
                }),
                reporting: None,
            },
            Series {
                id: 2,
                name: "line-1.pressure".into(),
                unit: "bar".into(),
                tags: tags(&[("site", "plant a"), ("line", "1")]),
                points: points(&|i| (1.0 + i as f64 / 8.0, Quality::Good)),
                reporting: None,
            },
        ],
        alarms: vec![],
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

/// The relay in-process with the given sink sections; its ledger in a temp dir.
struct RelayRun {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), edge_relay::RelayError>>,
    _state: tempfile::TempDir,
}

impl RelayRun {
    async fn start(sinks: &str) -> anyhow::Result<RelayRun> {
        let state = tempfile::tempdir()?;
        let config = RelayConfig::from_toml(&format!(
            "[[gateways]]\nid = \"{GATEWAY}\"\ntoken = \"{TOKEN}\"\n\
             [dedup]\npath = \"{}\"\n{sinks}",
            state.path().join("delivered.db").display()
        ))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let task = tokio::spawn(edge_relay::serve(
            listener,
            Relay::from_config(config)?,
            stop.clone(),
        ));
        Ok(RelayRun {
            base,
            client: reqwest::Client::builder().no_proxy().build()?,
            stop,
            task,
            _state: state,
        })
    }

    /// POST the batch; the status code.
    async fn post(&self, batch: &Batch) -> anyhow::Result<u16> {
        let response = self
            .client
            .post(format!("{}/v1/batches", self.base))
            .bearer_auth(TOKEN)
            .body(edge_wire::encode(batch)?)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

/// Start a relay with `sinks`, post `batch` once, stop it: the answer's status.
fn post_once(sinks: &str, batch: &Batch) -> anyhow::Result<u16> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let relay = RelayRun::start(sinks).await?;
        let status = relay.post(batch).await?;
        relay.stop().await?;
        anyhow::Ok(status)
    })
}

#[test]
fn influxdb_holds_every_reading_with_its_tags_and_timestamp() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let influx = Influxd::start(logs.path())?;
    influx.execute("CREATE DATABASE edge")?;
    let t0 = now_us() - 600_000_000 + 123_456;
    let sent = batch(7, t0, 6);
    let sinks = format!("[timeseries]\nurl = \"{}\"\n", influx.write_url("edge"));
    let status = post_once(&sinks, &sent)?;
    assert_eq!(status, 200, "influxd log:\n{}", influx.service.log_tail());

    for series in &sent.series {
        let answer = influx.query(
            "edge",
            &format!(
                // `series` is an InfluxQL keyword: quoted.
                "SELECT value, quality, gateway, site, line FROM edge WHERE \"series\" = '{}' ORDER BY time",
                series.name
            ),
        )?;
        let result = &answer["results"][0]["series"][0];
        assert_eq!(
            result["columns"],
            serde_json::json!(["time", "value", "quality", "gateway", "site", "line"])
        );
        // (time µs, value, quality, gateway, site, line); InfluxDB prints
        // 20.0 as 20, so values are compared as numbers.
        type Row = (
            i64,
            f64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let text = |v: &Value| v.as_str().map(String::from);
        let got: Vec<Row> = result["values"]
            .as_array()
            .with_context(|| format!("no rows: {answer}"))?
            .iter()
            .map(|r| {
                (
                    r[0].as_i64().unwrap_or(-1),
                    r[1].as_f64().unwrap_or(f64::NAN),
                    text(&r[2]),
                    text(&r[3]),
                    text(&r[4]),
                    text(&r[5]),
                )
            })
            .collect();
        let expected: Vec<Row> = series
            .points
            .iter()
            .map(|p| {
                (
                    p.ts_us,
                    p.value,
                    Some(p.quality.as_str().to_string()),
                    Some(GATEWAY.to_string()),
                    Some("plant a".to_string()),
                    series.tags.get("line").cloned(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{answer}");
    }
    Ok(())
}

#[test]
fn victoriametrics_gets_a_non_default_layout() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let vm = Victoria::start(logs.path())?;
    let t0 = (now_us() - 600_000_000) / 1000 * 1000; // whole milliseconds: VictoriaMetrics keeps ms
    let sent = batch(1, t0, 5);
    let sinks = format!(
        "[timeseries]\nurl = \"{}\"\nmeasurement = \"plant\"\nseries_tag = \"sensor\"\n\
         gateway_tag = \"\"\nquality = \"field\"\nvalue_field = \"v\"\n",
        vm.write_url()
    );
    let status = post_once(&sinks, &sent)?;
    assert_eq!(status, 200);

    let temp = &sent.series[0];
    let times: Vec<i64> = temp.points.iter().map(|p| p.ts_us / 1000).collect();
    for (metric, values) in [
        (
            "plant_v",
            temp.points.iter().map(|p| p.value).collect::<Vec<_>>(),
        ),
        (
            "plant_quality",
            temp.points
                .iter()
                .map(|p| f64::from(p.quality.code()))
                .collect(),
        ),
    ] {
        let exported = vm.export(&format!("{metric}{{sensor=\"line-1.temp\"}}"))?;
        assert_eq!(exported.len(), 1, "{metric}: {exported:?}");
        let line = &exported[0];
        assert_eq!(
            line["metric"],
            serde_json::json!({"__name__": metric, "sensor": "line-1.temp", "site": "plant a"}),
            "no gateway or quality label: {line}"
        );
        assert_eq!(line["timestamps"], serde_json::json!(times), "{metric}");
        let got: Vec<f64> = line["values"]
            .as_array()
            .context("values")?
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got, values, "{metric}");
    }
    // Nothing under the default names.
    assert!(vm.export("{__name__=~\"edge_.*\"}")?.is_empty());
    Ok(())
}

/// PostgreSQL at 127.0.0.1:5432 (trust auth, user `postgres`), in a schema of
/// this test's own, dropped by [`Pg::drop_all`].
struct Pg {
    schema: String,
    client: tokio_postgres::Client,
}

impl Pg {
    async fn new() -> anyhow::Result<Pg> {
        let schema = format!("edge_e2e_{}", std::process::id());
        let (client, connection) = tokio_postgres::connect(
            "postgresql://postgres@127.0.0.1:5432/postgres",
            tokio_postgres::NoTls,
        )
        .await
        .context("PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres) is needed")?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await?;
        Ok(Pg { schema, client })
    }

    fn table(&self) -> String {
        format!("{}.readings", self.schema)
    }

    /// (rows, distinct (series, time) pairs).
    async fn count(&self) -> anyhow::Result<(i64, i64)> {
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*), count(DISTINCT (series, time)) FROM {}",
                    self.table()
                ),
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    async fn drop_all(self) -> anyhow::Result<()> {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await?;
        Ok(())
    }
}

/// A TCP forwarder to PostgreSQL that can be cut (listener closed, every
/// connection dropped) and started again on the same port: a database
/// outage as the relay sees it.
struct Proxy {
    port: u16,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(port: u16) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Ok(Proxy { port, stop })
    }

    fn cut(self) -> u16 {
        self.stop.cancel();
        self.port
    }
}

/// Every (batch_seq, series, ts_us) in the readings topic of the mock
/// cluster, duplicates included; polls until `expected` distinct ones were
/// seen or 30 s passed.
fn kafka_readings(brokers: &str, expected: usize) -> anyhow::Result<Vec<(u64, String, i64)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sinks-e2e")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions.add_partition_offset("edge.readings.v1", 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&partitions)?;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
        if distinct.len() >= expected {
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let json: Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
        seen.push((
            json["batch_seq"].as_u64().context("batch_seq")?,
            json["series"].as_str().context("series")?.to_string(),
            json["ts_us"].as_i64().context("ts_us")?,
        ));
    }
    Ok(seen)
}

/// The (batch_seq, series, ts_us) of every reading of `batches`.
fn keys(batches: &[&Batch]) -> std::collections::BTreeSet<(u64, String, i64)> {
    batches
        .iter()
        .flat_map(|b| {
            b.series.iter().flat_map(move |s| {
                s.points
                    .iter()
                    .map(move |p| (b.seq, s.name.clone(), p.ts_us))
            })
        })
        .collect()
}

#[test]
fn kafka_victoriametrics_and_postgres_all_hold_a_batch_before_the_ack() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let vm = Victoria::start(logs.path())?;
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    cluster.create_topic("edge.readings.v1", 1, 1)?;
    cluster.create_topic("edge.alarms.v1", 1, 1)?;
    let brokers = cluster.bootstrap_servers();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let pg = Pg::new().await?;
        let proxy = Proxy::start(0).await?;
        let sinks = format!(
            "[kafka]\nbrokers = [\"{brokers}\"]\ndelivery_timeout_ms = 5000\n\
             [timeseries]\nurl = \"{}\"\n\
             [postgres]\nurl = \"postgresql://postgres@127.0.0.1:{}/postgres\"\ntable = \"{}\"\ntimeout_ms = 3000\n",
            vm.write_url(),
            proxy.port,
            pg.table()
        );
        let relay = RelayRun::start(&sinks).await?;
        let t0 = (now_us() - 600_000_000) / 1000 * 1000;
        let first = batch(1, t0, 4);
        assert_eq!(relay.post(&first).await?, 200);
        // The 200 came after every sink had the batch: no waiting here.
        assert_eq!(pg.count().await?, (8, 8));
        let exported = tokio::task::block_in_place(|| vm.export("edge_value"))?;
        let points: usize = exported
            .iter()
            .map(|l| l["values"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(points, 8, "{exported:?}");
        let seen = tokio::task::block_in_place(|| kafka_readings(&brokers, 8))?;
        assert_eq!(seen.into_iter().collect::<std::collections::BTreeSet<_>>(), keys(&[&first]));

        // PostgreSQL goes away: the relay refuses the next batch.
        let port = proxy.cut();
        let second = batch(2, t0 + 60_000_000, 4);
        assert_eq!(relay.post(&second).await?, 503);
        // Whatever Kafka got of the refused batch, the acknowledged one is whole.
        let seen = tokio::task::block_in_place(|| kafka_readings(&brokers, 8))?;
        let seen: std::collections::BTreeSet<_> = seen.into_iter().collect();
        assert!(keys(&[&first]).is_subset(&seen));

        // Back: the retry is accepted and PostgreSQL holds each reading once.
        let proxy = Proxy::start(port).await?;
        assert_eq!(relay.post(&second).await?, 200);
        assert_eq!(pg.count().await?, (16, 16));
        let seen = tokio::task::block_in_place(|| kafka_readings(&brokers, 16))?;
        let seen: std::collections::BTreeSet<_> = seen.into_iter().collect();
        assert_eq!(seen, keys(&[&first, &second]));
        proxy.cut();
        relay.stop().await?;
        pg.drop_all().await
    })
}
