#!/usr/bin/env python3
"""A Sparkplug B edge node for the agent's end-to-end test, built on
pysparkplug (an implementation nobody in this project wrote), so the agent
is checked against someone else's reading of the specification.

Usage: edge_node.py HOST PORT GROUP NODE

It reads commands from stdin, one per line, and answers each on stdout
with one line starting "ok " once it has published (or "error ..."):
  birth   connect: NBIRTH (every scalar datatype, with aliases), then a
          DBIRTH of device "motor" (the test waits for them to arrive before
          its next command: "ok" means queued in the client)
  alias   NDATA and DDATA carrying aliases only, no names, no datatypes
  gap     an NDATA whose seq skips one number (a lost message)
  die     exit at once without DISCONNECT: the broker sends the NDEATH will
An NCMD "Node Control/Rebirth" from a host is answered by reconnecting,
which publishes an NDEATH, then a new NBIRTH with the next bdSeq, and a
line "rebirth bdseq=N" on stdout.
"""

import datetime
import os
import sys
import threading

import pysparkplug as sp

host, port, group, node_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
T = sp.DataType
out_lock = threading.Lock()


def say(line):
    with out_lock:
        print(line, flush=True)


def now_ms():
    return sp.get_current_timestamp()


# (name, alias, datatype, birth value, alias-data value)
NODE_METRICS = [
    ("i8", 1, T.INT8, -5, -128),
    ("i16", 2, T.INT16, -300, 32767),
    ("i32", 3, T.INT32, -70000, -2147483648),
    ("i64", 4, T.INT64, -5000000000, 9007199254740993),
    ("u8", 5, T.UINT8, 200, 255),
    ("u16", 6, T.UINT16, 60000, 1),
    ("u32", 7, T.UINT32, 4000000000, 0),
    ("u64", 8, T.UINT64, 18000000000000000000, 42),
    ("f32", 9, T.FLOAT, 1.5, -0.25),
    ("f64", 10, T.DOUBLE, 3.141592653589793, 2.718281828459045),
    ("flag", 11, T.BOOLEAN, True, False),
    ("when", 12, T.DATETIME, datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
     datetime.datetime(2025, 6, 7, 8, 9, 10, tzinfo=datetime.timezone.utc)),
    ("label", 13, T.STRING, "recipe A", "recipe B"),
]
DEVICE_METRICS = [("rpm", 100, T.DOUBLE, 1450.0, 1500.5)]


def metrics(table, birth):
    ts = now_ms()
    return [
        sp.Metric(timestamp=ts, name=name, alias=alias, datatype=dt, value=(b if birth else d))
        for (name, alias, dt, b, d) in table
    ]


def alias_only(table):
    ts = now_ms()
    return tuple(
        sp.Metric(timestamp=ts, name=None, alias=alias, datatype=dt, value=d)
        for (name, alias, dt, b, d) in table
    )


node = None
rebirths = 0


def on_command(edge_node, message):
    global rebirths
    names = [m.name for m in message.payload.metrics]
    if "Node Control/Rebirth" in names:
        # Reconnect on a thread of our own: not inside the client's callback.
        def rebirth():
            global rebirths
            rebirths += 1
            edge_node.disconnect()
            edge_node.connect(host, port=port, blocking=False)
        threading.Thread(target=rebirth).start()
        say(f"rebirth requested {rebirths + 1}")


for line in sys.stdin:
    cmd = line.strip()
    try:
        if cmd == "birth":
            node = sp.EdgeNode(group, node_id, metrics(NODE_METRICS, True), cmd_callback=on_command)
            # Registered before connecting: the connect callback publishes
            # the NBIRTH and then this DBIRTH, once, in that order.
            node.register(sp.Device("motor", metrics(DEVICE_METRICS, True)))
            node.connect(host, port=port, blocking=False)
            # Connected: the client's callback is publishing the births.
            for _ in range(2000):
                if node._connected:
                    break
                threading.Event().wait(0.01)
            say("ok birth")
        elif cmd == "alias":
            c = node._client
            topic = sp.Topic(message_type=sp.MessageType.NDATA, group_id=group, edge_node_id=node_id)
            c.publish(sp.Message(topic=topic, payload=sp.NData(timestamp=now_ms(), seq=node._seq,
                                 metrics=alias_only(NODE_METRICS)), qos=sp.QoS.AT_MOST_ONCE, retain=False),
                      include_dtypes=False)
            topic = sp.Topic(message_type=sp.MessageType.DDATA, group_id=group, edge_node_id=node_id,
                             device_id="motor")
            c.publish(sp.Message(topic=topic, payload=sp.DData(timestamp=now_ms(), seq=node._seq,
                                 metrics=alias_only(DEVICE_METRICS)), qos=sp.QoS.AT_MOST_ONCE, retain=False),
                      include_dtypes=False)
            say("ok alias")
        elif cmd == "gap":
            node._seq  # one seq number the host never sees
            node.update([sp.Metric(timestamp=now_ms(), name="f64", alias=10, datatype=T.DOUBLE, value=99.5)])
            say("ok gap")
        elif cmd == "die":
            sys.stdout.flush()
            os._exit(0)
        else:
            say(f"error unknown command {cmd!r}")
    except Exception as e:  # the test reads this line instead of a silence
        say(f"error {cmd}: {e!r}")
