//! The ledger's behaviour, checked the same way on both stores: SQLite in a
//! temp dir and PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`),
//! each test in a schema of its own, dropped at the end. Time is injected
//! (`now_ms`), so windows and leases are tested without sleeping.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use super::*;

const HOUR_MS: i64 = 3_600_000;
const T0: i64 = 1_800_000_000_000;

fn options() -> LedgerOptions {
    LedgerOptions {
        window: Duration::from_secs(24 * 3600),
        lease: Duration::from_secs(60),
        max_rows: 1_000,
    }
}

fn key(gateway: &str, instance: u64, seq: u64) -> BatchKey {
    BatchKey {
        gateway: gateway.into(),
        instance,
        seq,
    }
}

const A: Digest = [0xa; 16];
const B: Digest = [0xb; 16];

/// A store to test, and what to clean up after.
struct Store {
    name: &'static str,
    ledger: Ledger,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, tokio_postgres::Client)>,
}

impl Store {
    async fn drop_all(self) {
        if let Some((schema, client)) = self.schema {
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .unwrap();
        }
    }
}

pub(crate) const PG_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

/// A fresh schema on the test server: its name and a client.
pub(crate) async fn pg_schema() -> (String, tokio_postgres::Client) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "ledger_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (trust auth, database test) is needed");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))
        .await
        .unwrap();
    (name, client)
}

async fn stores_with(options: LedgerOptions) -> Vec<Store> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Ledger::sqlite(&dir.path().join("delivered.db"), options.clone()).unwrap();
    let (schema, client) = pg_schema().await;
    let postgres = Ledger::postgres(
        &PG_URL.parse().unwrap(),
        &format!("{schema}.ledger"),
        Duration::from_secs(5),
        options,
    );
    vec![
        Store {
            name: "sqlite",
            ledger: sqlite,
            _dir: Some(dir),
            schema: None,
        },
        Store {
            name: "postgres",
            ledger: postgres,
            _dir: None,
            schema: Some((schema, client)),
        },
    ]
}

async fn stores() -> Vec<Store> {
    stores_with(options()).await
}

/// What a claim answered, without the guard.
#[derive(Debug, PartialEq)]
enum Got {
    New,
    Conflict,
    Delivered,
    InFlight,
}

fn got(claim: &Claim) -> Got {
    match claim {
        Claim::New {
            conflict: false, ..
        } => Got::New,
        Claim::New { conflict: true, .. } => Got::Conflict,
        Claim::Delivered => Got::Delivered,
        Claim::InFlight => Got::InFlight,
    }
}

async fn deliver(ledger: &Ledger, key: BatchKey, digest: Digest, now: i64) -> Got {
    let claim = ledger.claim(key, digest, now).await.unwrap();
    let answer = got(&claim);
    if let Claim::New { guard, .. } = claim {
        guard.record(now).await.unwrap();
    }
    answer
}

/// Wait until the PostgreSQL release task ran (SQLite releases at once).
async fn until_no_claims(ledger: &Ledger) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ledger.claims_held().await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "claim never released");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_batch_is_new_in_flight_then_delivered_per_gateway_instance_and_seq() {
    for store in stores().await {
        let l = &store.ledger;
        let n = store.name;
        let claim = l.claim(key("gw-a", 1, 7), A, T0).await.unwrap();
        assert_eq!(got(&claim), Got::New, "{n}");
        assert_eq!(
            got(&l.claim(key("gw-a", 1, 7), A, T0).await.unwrap()),
            Got::InFlight,
            "{n}"
        );
        let Claim::New { guard, .. } = claim else {
            unreachable!()
        };
        guard.record(T0).await.unwrap();
        assert_eq!(
            deliver(l, key("gw-a", 1, 7), A, T0 + 1).await,
            Got::Delivered,
            "{n}"
        );
        // Another gateway's 7, another spool instance's 7 (the gateway was
        // reinstalled) and this spool's 8 are new.
        assert_eq!(deliver(l, key("gw-b", 1, 7), A, T0).await, Got::New, "{n}");
        assert_eq!(deliver(l, key("gw-a", 2, 7), A, T0).await, Got::New, "{n}");
        assert_eq!(deliver(l, key("gw-a", 1, 8), A, T0).await, Got::New, "{n}");
        assert_eq!(l.rows().await.unwrap(), 4, "{n}");
        until_no_claims(l).await;
        store.drop_all().await;
    }
}

#[tokio::test]
async fn other_content_under_a_known_key_is_a_conflict_not_a_duplicate() {
    for store in stores().await {
        let (l, n) = (&store.ledger, store.name);
        assert_eq!(deliver(l, key("gw", 0, 1), A, T0).await, Got::New, "{n}");
        assert_eq!(
            deliver(l, key("gw", 0, 1), B, T0).await,
            Got::Conflict,
            "{n}"
        );
        // Both contents are remembered: a retry of either is a duplicate.
        assert_eq!(
            deliver(l, key("gw", 0, 1), A, T0).await,
            Got::Delivered,
            "{n}"
        );
        assert_eq!(
            deliver(l, key("gw", 0, 1), B, T0).await,
            Got::Delivered,
            "{n}"
        );
        store.drop_all().await;
    }
}

#[tokio::test]
async fn a_dropped_guard_releases_its_claim_on_every_path() {
    for store in stores().await {
        let (l, n) = (&store.ledger, store.name);
        // Sink failure: the guard is dropped without recording.
        let claim = l.claim(key("gw", 1, 1), A, T0).await.unwrap();
        assert_eq!(got(&claim), Got::New, "{n}");
        drop(claim);
        until_no_claims(l).await;
        assert_eq!(deliver(l, key("gw", 1, 1), A, T0).await, Got::New, "{n}");
        // A claim future dropped after each number of polls, with time for
        // the blocking lookup or the server to progress between polls.
        for polls in 0..8 {
            let k = key("gw", 1, 100 + polls);
            {
                let mut fut = pin!(l.claim(k.clone(), A, T0));
                for _ in 0..polls {
                    let ready =
                        std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready()))
                            .await;
                    if ready {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            until_no_claims(l).await;
            assert_eq!(
                deliver(l, k, A, T0).await,
                Got::New,
                "{n} after {polls} polls"
            );
        }
        store.drop_all().await;
    }
}

#[tokio::test]
async fn a_claim_never_released_expires_with_its_lease() {
    for store in stores().await {
        let (l, n) = (&store.ledger, store.name);
        let claim = l.claim(key("gw", 1, 1), A, T0).await.unwrap();
        // As if the relay holding it were killed: nothing releases it.
        std::mem::forget(claim);
        let lease = options().lease.as_millis() as i64;
        assert_eq!(
            got(&l.claim(key("gw", 1, 1), A, T0 + lease - 1).await.unwrap()),
            Got::InFlight,
            "{n}"
        );
        assert_eq!(
            deliver(l, key("gw", 1, 1), A, T0 + lease).await,
            Got::New,
            "{n}"
        );
        // Pruning forgets ended leases.
        std::mem::forget(l.claim(key("gw", 1, 2), A, T0).await.unwrap());
        assert_eq!(l.claims_held().await.unwrap(), 1, "{n}");
        let pruned = l.prune(T0 + lease).await.unwrap();
        assert_eq!(pruned.claims, 1, "{n}");
        assert_eq!(l.claims_held().await.unwrap(), 0, "{n}");
        store.drop_all().await;
    }
}

#[tokio::test]
async fn the_window_holds_before_any_prune_and_prune_deletes_what_is_past_it() {
    for store in stores().await {
        let (l, n) = (&store.ledger, store.name);
        let window = 24 * HOUR_MS;
        for seq in 1..=3 {
            deliver(l, key("gw", 1, seq), A, T0 + seq as i64 * HOUR_MS).await;
        }
        // Just inside the window of seq 1: a duplicate. Just past it: new
        // again, though nothing was pruned.
        let t = T0 + HOUR_MS + window;
        assert_eq!(
            deliver(l, key("gw", 1, 2), A, t).await,
            Got::Delivered,
            "{n}"
        );
        assert_eq!(
            deliver(l, key("gw", 1, 1), A, t).await,
            Got::Delivered,
            "{n}"
        );
        assert_eq!(
            deliver(l, key("gw", 1, 3), A, t).await,
            Got::Delivered,
            "{n}"
        );
        // (the retries above recorded again, at t: the row's age restarts)
        let later = t + window + 1;
        assert_eq!(
            got(&l.claim(key("gw", 1, 1), A, later).await.unwrap()),
            Got::New,
            "{n}"
        );
        until_no_claims(l).await;
        let pruned = l.prune(later).await.unwrap();
        assert_eq!(pruned.by_age, 3, "{n}");
        assert_eq!(l.rows().await.unwrap(), 0, "{n}");
        store.drop_all().await;
    }
}

#[tokio::test]
async fn prune_keeps_at_most_max_rows_dropping_the_oldest() {
    let options = LedgerOptions {
        max_rows: 5,
        ..options()
    };
    for store in stores_with(options).await {
        let (l, n) = (&store.ledger, store.name);
        for seq in 1..=8 {
            deliver(l, key("gw", 1, seq), A, T0 + seq as i64).await;
        }
        let pruned = l.prune(T0 + 100).await.unwrap();
        assert_eq!((pruned.by_age, pruned.by_rows), (0, 3), "{n}");
        assert_eq!(l.rows().await.unwrap(), 5, "{n}");
        for (seq, expected) in [
            (1, Got::New),
            (3, Got::New),
            (4, Got::Delivered),
            (8, Got::Delivered),
        ] {
            assert_eq!(
                got(&l.claim(key("gw", 1, seq), A, T0 + 100).await.unwrap()),
                expected,
                "{n} seq {seq}"
            );
        }
        store.drop_all().await;
    }
}

#[tokio::test]
async fn two_ledgers_on_one_postgres_table_claim_a_batch_once() {
    let (schema, client) = pg_schema().await;
    let table = format!("{schema}.ledger");
    let url: tokio_postgres::Config = PG_URL.parse().unwrap();
    let a = Ledger::postgres(&url, &table, Duration::from_secs(5), options());
    let b = Ledger::postgres(&url, &table, Duration::from_secs(5), options());
    // Many batches claimed by both relays at the same moment: for each,
    // exactly one gets New; the other InFlight or (if the first recorded
    // already) Delivered. Never both New.
    let mut news = 0;
    for seq in 1..=40 {
        let (ra, rb) = tokio::join!(
            deliver(&a, key("gw", 5, seq), A, T0),
            deliver(&b, key("gw", 5, seq), A, T0)
        );
        let new = [&ra, &rb].iter().filter(|g| ***g == Got::New).count();
        assert_eq!(new, 1, "seq {seq}: {ra:?} {rb:?}");
        news += new;
    }
    assert_eq!(news, 40);
    assert_eq!(a.rows().await.unwrap(), 40);
    // What one relay recorded, the other knows.
    assert_eq!(
        deliver(&b, key("gw", 5, 1), A, T0 + 1).await,
        Got::Delivered
    );
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[test]
fn an_old_ledger_file_is_migrated_and_its_batches_stay_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("delivered.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE delivered (gateway TEXT NOT NULL, seq INTEGER NOT NULL,
                 delivered_s INTEGER NOT NULL, PRIMARY KEY (gateway, seq)) WITHOUT ROWID;
             INSERT INTO delivered VALUES ('gw', 5, 1800000000);",
        )
        .unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let l = Ledger::sqlite(&path, options()).unwrap();
        assert_eq!(l.rows().await.unwrap(), 1);
        // Any content of (gw, no instance, 5) is what was delivered then.
        assert_eq!(deliver(&l, key("gw", 0, 5), B, T0).await, Got::Delivered);
        assert_eq!(deliver(&l, key("gw", 0, 6), B, T0).await, Got::New);
        assert_eq!(deliver(&l, key("gw", 7, 5), B, T0).await, Got::New);
    });
}

#[test]
fn the_digest_covers_every_field_and_not_the_encoding() {
    use edge_wire::{AlarmEvent, AlarmState, Batch, Point, Quality, Series};
    let batch = Batch {
        gateway_id: "gw".into(),
        instance: None,
        seq: 1,
        created_us: 10,
        series: vec![Series {
            id: 1,
            name: "s".into(),
            unit: "C".into(),
            tags: [("k".to_string(), "v".to_string())].into(),
            points: vec![Point {
                ts_us: 5,
                value: 1.5,
                quality: Quality::Good,
            }],
            reporting: None,
        }],
        alarms: vec![AlarmEvent {
            series_id: 1,
            spc: None,
            rule: "hi".into(),
            state: AlarmState::Raised,
            severity: None,
            value: 1.5,
            limit: 1.0,
            ts_us: 5,
            duration_us: None,
            limit_kind: None,
        }],
        gaps: vec![],
        devices: vec![],
    };
    let d = digest(&batch);
    // Decoding its encoding gives the same digest.
    let decoded =
        edge_wire::decode(&edge_wire::encode(&batch).unwrap(), &Default::default()).unwrap();
    assert_eq!(digest(&decoded), d);
    type Change = Box<dyn Fn(&mut Batch)>;
    let changes: Vec<Change> = vec![
        Box::new(|b| b.gateway_id.push('x')),
        Box::new(|b| b.seq += 1),
        Box::new(|b| b.instance = std::num::NonZeroU64::new(7)),
        Box::new(|b| b.created_us += 1),
        Box::new(|b| b.series[0].name.push('x')),
        Box::new(|b| b.series[0].unit.clear()),
        Box::new(|b| {
            b.series[0].tags.insert("k2".into(), "v".into());
        }),
        Box::new(|b| b.series[0].points[0].value = -1.5),
        Box::new(|b| b.series[0].points[0].ts_us += 1),
        Box::new(|b| b.series[0].points[0].quality = Quality::Bad),
        Box::new(|b| b.alarms[0].state = AlarmState::Cleared),
        Box::new(|b| b.alarms[0].duration_us = Some(0)),
        Box::new(|b| b.alarms.clear()),
        Box::new(|b| {
            b.devices.push(edge_wire::DeviceEvent {
                device: "press-3".into(),
                source: "modbus".into(),
                state: edge_wire::DeviceState::Ok,
                previous: edge_wire::DeviceState::Down,
                reason: None,
                at_us: 2,
                since_us: 1,
            })
        }),
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut other = batch.clone();
        change(&mut other);
        assert_ne!(digest(&other), d, "change {i}");
    }
}

/// Another ledger on the store of `store` (a restarted relay, or another
/// relay of a PostgreSQL fleet): nothing in its memory.
fn reopen(store: &Store) -> Ledger {
    match &store.schema {
        None => Ledger::sqlite(
            &store._dir.as_ref().unwrap().path().join("delivered.db"),
            options(),
        )
        .unwrap(),
        Some((schema, _)) => Ledger::postgres(
            &PG_URL.parse().unwrap(),
            &format!("{schema}.ledger"),
            Duration::from_secs(5),
            options(),
        ),
    }
}

fn series_table(n: u32) -> edge_wire::codec::reference::SeriesTable {
    // Any bytes: the ledger stores tables, it does not read them.
    edge_wire::codec::reference::SeriesTable::new(format!("table {n}").into_bytes())
}

#[tokio::test]
async fn series_tables_are_kept_per_gateway_and_found_by_another_ledger_on_the_store() {
    use tables::Kept;
    for store in stores().await {
        let l = &store.ledger;
        let t = series_table(1);
        assert_eq!(l.series_table("gw", &t.id).await.unwrap(), None);
        assert_eq!(
            l.keep_series_table("gw", &t, T0).await.unwrap(),
            Kept::Written
        );
        assert_eq!(l.keep_series_table("gw", &t, T0).await.unwrap(), Kept::Held);
        assert_eq!(
            l.series_table("gw", &t.id).await.unwrap().as_deref(),
            Some(t.bytes.as_slice()),
            "{}",
            store.name
        );
        assert_eq!(l.series_table("other-gw", &t.id).await.unwrap(), None);
        assert_eq!(l.series_tables().await.unwrap(), 1);

        // Another ledger on the same store (a restarted relay, or another
        // relay of a PostgreSQL fleet) reads it from the store.
        let again = reopen(&store);
        assert_eq!(
            again.series_table("gw", &t.id).await.unwrap().as_deref(),
            Some(t.bytes.as_slice()),
            "{}",
            store.name
        );
        store.drop_all().await;
    }
}

#[tokio::test]
async fn a_gateway_keeps_its_newest_64_tables_and_old_ones_are_pruned() {
    for store in stores().await {
        let l = &store.ledger;
        let n = tables::TABLES_PER_GATEWAY as u32;
        for i in 0..n + 3 {
            l.keep_series_table("gw", &series_table(i), T0 + i64::from(i))
                .await
                .unwrap();
        }
        l.keep_series_table("gw-2", &series_table(0), T0)
            .await
            .unwrap();
        assert_eq!(
            l.series_tables().await.unwrap(),
            u64::from(n) + 1,
            "{}",
            store.name
        );
        // A fresh ledger on the store, so the memory cache does not answer.
        let fresh = reopen(&store);
        for i in 0..3 {
            let t = series_table(i);
            assert_eq!(fresh.series_table("gw", &t.id).await.unwrap(), None, "{i}");
        }
        assert!(fresh
            .series_table("gw", &series_table(3).id)
            .await
            .unwrap()
            .is_some());
        assert!(fresh
            .series_table("gw-2", &series_table(0).id)
            .await
            .unwrap()
            .is_some());

        // Thirty days after the last store, prune forgets them.
        let retention = tables::TABLE_RETENTION.as_millis() as i64;
        let pruned = fresh.prune(T0 + 6 + retention).await.unwrap();
        assert_eq!(
            pruned.tables,
            3 + 1,
            "{}: gw's tables 3, 4, 5 and gw-2's",
            store.name
        );
        assert_eq!(fresh.series_tables().await.unwrap(), u64::from(n) - 3);
        store.drop_all().await;
    }
}

#[test]
fn a_stored_table_that_does_not_hash_to_its_id_counts_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("delivered.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = series_table(7);
    runtime.block_on(async {
        let l = Ledger::sqlite(&path, options()).unwrap();
        l.keep_series_table("gw", &t, T0).await.unwrap();
    });
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute("UPDATE series_tables SET body = x'00'", [])
        .unwrap();
    drop(db);
    runtime.block_on(async {
        let l = Ledger::sqlite(&path, options()).unwrap();
        assert_eq!(l.series_table("gw", &t.id).await.unwrap(), None);
    });
}
