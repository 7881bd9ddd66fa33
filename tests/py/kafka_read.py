#!/usr/bin/env python3
"""Read every message of a Kafka topic with kafka-python (a client written
independently of librdkafka) and print one JSON object per line:
{"partition", "offset", "key", "value" (parsed JSON), "headers"}.

Usage: kafka_read.py BROKER TOPIC [IDLE_MS]
Stops once no new message has arrived for IDLE_MS (default 3000)."""
import json
import sys

from kafka import KafkaConsumer, TopicPartition


def main():
    broker, topic = sys.argv[1], sys.argv[2]
    idle_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    consumer = KafkaConsumer(
        bootstrap_servers=[broker],
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=idle_ms,
    )
    partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        print(f"kafka_read: topic {topic!r} has no partitions", file=sys.stderr)
        sys.exit(2)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    for msg in consumer:
        print(json.dumps({
            "partition": msg.partition,
            "offset": msg.offset,
            "key": msg.key.decode() if msg.key is not None else None,
            "value": json.loads(msg.value),
            "headers": {k: v.decode() for k, v in (msg.headers or [])},
        }))
    consumer.close()


if __name__ == "__main__":
    main()
