//! Kafka sink against librdkafka's in-process mock cluster: delivery is
//! acknowledged when the broker is up, and fails (rather than hangs) within
//! the delivery timeout when it is down.

use super::*;
use edge_wire::{AlarmEvent, AlarmState, Batch, Point, Quality, Series};
use rdkafka::mocking::MockCluster;

fn delivery() -> Arc<Delivery> {
    let batch = Batch {
        gateway_id: "gw-1".into(),
        instance: None,
        seq: 4,
        created_us: 0,
        series: vec![Series {
            id: 1,
            name: "press-3.oil_temp".into(),
            unit: "degC".into(),
            tags: Default::default(),
            points: (0..50)
                .map(|i| Point {
                    ts_us: i,
                    value: i as f64,
                    quality: Quality::Good,
                })
                .collect(),
            reporting: None,
        }],
        alarms: vec![AlarmEvent {
            series_id: 1,
            spc: None,
            rule: "oil_temp.high".into(),
            state: AlarmState::Raised,
            value: 49.0,
            limit: 40.0,
            ts_us: 49,
            severity: None,
            duration_us: None,
            limit_kind: None,
        }],
        gaps: Vec::new(),
        devices: Vec::new(),
    };
    Arc::new(Delivery::new(batch).unwrap())
}

fn config(brokers: String, timeout_ms: u64) -> KafkaConfig {
    KafkaConfig {
        delivery_timeout: Duration::from_millis(timeout_ms),
        ..KafkaConfig::new(vec![brokers])
    }
}

#[tokio::test]
async fn delivers_to_a_live_mock_cluster() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("edge.readings.v1", 2, 1).unwrap();
    cluster.create_topic("edge.alarms.v1", 1, 1).unwrap();
    let sink = KafkaSink::new(&config(cluster.bootstrap_servers(), 10_000)).unwrap();
    sink.deliver(delivery()).await.unwrap();
}

#[tokio::test]
async fn fails_within_the_timeout_when_the_broker_is_down() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("edge.readings.v1", 1, 1).unwrap();
    cluster.create_topic("edge.alarms.v1", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let sink = KafkaSink::new(&config(cluster.bootstrap_servers(), 1_000)).unwrap();
    let started = Instant::now();
    let err = sink.deliver(delivery()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, SinkError::KafkaDelivery { .. }), "{err}");
    assert!(err.to_string().contains("gw-1"), "{err}");
}
