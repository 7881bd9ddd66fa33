#!/usr/bin/env python3
"""A consumer of the relay's v2 topics (docs/kafka-messages.md): it reads
readings in both shapes and alarms, drops the duplicates that at-least-once
delivery allows, and joins every alarm to the last reading of the same key
at or before the alarm.

The keys it relies on, as documented:
- Kafka key `<gateway>:<series>` on readings, series batches and alarms
  (split at the last colon; series names never contain one). The relay
  places keys with the Java client's murmur2 partitioner, so with the same
  partition count on both topics, partition p of the readings topic and
  partition p of the alarms topic hold the same keys: one consumer per
  partition pair can join without a shuffle.
- A reading is identified by (gateway, series, ts_us); a point of a series
  batch by (gateway, series, t_us): the same reading in either shape.
- An alarm event is identified by (gateway, series, rule, limit_kind,
  state, ts_us): a `min`/`max` rule names its low and high alarms alike,
  and `limit_kind` says which limit fired.
- Dispatch on the `schema` header, never on the fields present.

Usage: kafka_consumer.py BROKER [READINGS_TOPIC] [ALARMS_TOPIC]
(defaults edge.readings.v2 and edge.alarms.v2). Reads both topics from the
beginning until idle for 3 s, then prints one JSON object: counts and the
joined alarms. Needs kafka-python (and lz4 for the relay's compression).
A real job would keep the state per partition and expire it; this one
keeps everything in memory to stay short.
"""
import bisect
import json
import sys

from kafka import KafkaConsumer, TopicPartition


def readings_of(schema, value):
    """(identity, ts_us, value) of every reading in one message, either shape."""
    gateway, series = value["gateway"], value["series"]
    if schema.startswith("edge.reading."):
        yield (gateway, series, value["ts_us"]), value["ts_us"], value["value"]
    elif schema.startswith("edge.series-batch."):
        for p in value["points"]:
            yield (gateway, series, p["t_us"]), p["t_us"], p["value"]
    # Another schema on the topic: a shape this consumer does not know; skip.


class Join:
    """Deduplicated readings per key, and alarms joined to them."""

    def __init__(self):
        self.seen_readings = set()
        self.seen_alarms = set()
        self.duplicates = 0
        self.by_key = {}  # key -> sorted [(ts_us, value)]
        self.alarms = []

    def reading_message(self, key, schema, value):
        for identity, ts_us, v in readings_of(schema, value):
            if identity in self.seen_readings:
                self.duplicates += 1
                continue
            self.seen_readings.add(identity)
            bisect.insort(self.by_key.setdefault(key, []), (ts_us, v))

    def alarm_message(self, key, value):
        identity = (value["gateway"], value["series"], value["rule"],
                    value.get("limit_kind"), value["state"], value["ts_us"])
        if identity in self.seen_alarms:
            self.duplicates += 1
            return
        self.seen_alarms.add(identity)
        self.alarms.append((key, value))

    def joined(self):
        """Every alarm with the last reading of its key at or before it."""
        out = []
        for key, a in self.alarms:
            readings = self.by_key.get(key, [])
            i = bisect.bisect_right(readings, (a["ts_us"], float("inf")))
            last = readings[i - 1] if i else None
            gateway, series = key.rsplit(":", 1)
            out.append({
                "gateway": gateway, "series": series, "rule": a["rule"],
                "state": a["state"], "limit_kind": a.get("limit_kind"),
                "ts_us": a["ts_us"],
                "last_reading": None if last is None else {"ts_us": last[0], "value": last[1]},
            })
        return out


def consume(broker, topic, idle_ms=3000):
    """(key, schema header, parsed value) of every message of `topic`."""
    consumer = KafkaConsumer(bootstrap_servers=[broker], group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=idle_ms)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    for msg in consumer:
        headers = {k: v.decode() for k, v in (msg.headers or [])}
        yield msg.key.decode(), headers.get("schema", ""), json.loads(msg.value)
    consumer.close()


def main():
    broker = sys.argv[1]
    readings_topic = sys.argv[2] if len(sys.argv) > 2 else "edge.readings.v2"
    alarms_topic = sys.argv[3] if len(sys.argv) > 3 else "edge.alarms.v2"
    join = Join()
    for key, schema, value in consume(broker, readings_topic):
        join.reading_message(key, schema, value)
    for key, schema, value in consume(broker, alarms_topic):
        if schema.startswith("edge.alarm."):
            join.alarm_message(key, value)
    print(json.dumps({
        "readings": len(join.seen_readings),
        "alarms": len(join.seen_alarms),
        "duplicates": join.duplicates,
        "joined": join.joined(),
    }))


if __name__ == "__main__":
    main()
