"""A microcontroller that speaks the frame format, written from
docs/firmware-frames.md alone (no Rust code read), to prove the document
is enough to implement a device.

Usage: mcu_device.py PORT SAMPLES [--interval-ms N] [--timeout-ms N]

Opens PORT (a serial device or pty), sends a birth, takes SAMPLES samples
of one counter channel ("count", value = the sample's number), keeps each
until an Ack covers it and resends unacknowledged ones after the timeout,
oldest first; answers Nack(NoBirth) with its birth. Prints one JSON line
with what it did and exits 0 once every sample is acknowledged, 1 after
120 s.
"""

import json
import os
import random
import sys
import time


# --- framing (docs/firmware-frames.md, "Framing") ---------------------------

def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def cobs_encode(raw: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for b in raw:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block = bytearray()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            raise ValueError("bad COBS")
        out += data[i + 1:i + code]
        i += code
        if code < 255 and i < len(data):
            out.append(0)
    return bytes(out)


def frame(body: bytes) -> bytes:
    raw = bytes([1]) + body
    raw += crc16_ccitt_false(raw).to_bytes(2, "little")
    return cobs_encode(raw) + b"\x00"


def unframe(wire: bytes):
    raw = cobs_decode(wire)
    if len(raw) < 3:
        raise ValueError("too short")
    data, crc = raw[:-2], raw[-2:]
    if crc16_ccitt_false(data).to_bytes(2, "little") != crc:
        raise ValueError("CRC")
    if data[0] != 1:
        raise ValueError("version")
    return data[1:]


# --- body (docs/firmware-frames.md, "Body encoding" and "Messages") --------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(b: bytes, i: int):
    n = shift = 0
    while True:
        byte = b[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, i


def string(s: str) -> bytes:
    data = s.encode()
    return varint(len(data)) + data


def birth(device_id: str, boot_id: int) -> bytes:
    channel = bytes([0]) + string("count") + string("n") + varint(2) + b"\x00"
    return (varint(0) + string(device_id) + bytes([0, 2, 0]) + varint(boot_id)
            + varint(1000) + varint(1) + channel)


def samples(seq: int, ticks: int, value: float) -> bytes:
    import struct
    reading = bytes([0]) + struct.pack("<f", value)
    return varint(1) + varint(seq) + varint(ticks) + varint(0) + varint(1) + reading


def parse(body: bytes):
    """Ack and Nack, the agent → device messages a device acts on."""
    variant, i = read_varint(body, 0)
    if variant == 4:
        seq, i = read_varint(body, i)
        return ("ack", seq) if i == len(body) else None
    if variant == 5:
        seq, i = read_varint(body, i)
        reason, i = read_varint(body, i)
        return ("nack", seq, reason) if i == len(body) else None
    return None


# --- the device -------------------------------------------------------------

def main() -> int:
    port, total = sys.argv[1], int(sys.argv[2])
    opts = dict(zip(sys.argv[3::2], sys.argv[4::2]))
    interval = int(opts.get("--interval-ms", "10")) / 1000
    timeout = int(opts.get("--timeout-ms", "500")) / 1000
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    boot_id = random.getrandbits(32)
    start = time.monotonic()
    pending = {}  # seq -> (value, ticks, last sent)
    taken = acks = resends = 0
    rx = bytearray()

    def send(body: bytes):
        os.write(fd, frame(body))

    send(birth("py-mcu", boot_id))
    while time.monotonic() - start < 120:
        now = time.monotonic()
        if taken < total and now - start >= taken * interval:
            ticks = int((now - start) * 1000)
            pending[taken] = (float(taken), ticks, now)
            send(samples(taken, ticks, float(taken)))
            taken += 1
        for seq in sorted(pending):
            value, ticks, sent = pending[seq]
            if now - sent >= timeout:
                pending[seq] = (value, ticks, now)
                send(samples(seq, ticks, value))
                resends += 1
        try:
            rx += os.read(fd, 4096)
        except BlockingIOError:
            pass
        while b"\x00" in rx:
            wire, _, rest = bytes(rx).partition(b"\x00")
            rx = bytearray(rest)
            if not wire:
                continue
            try:
                msg = parse(unframe(wire))
            except (ValueError, IndexError):
                continue
            if msg and msg[0] == "ack":
                acks += 1
                for seq in [s for s in pending if s <= msg[1]]:
                    del pending[seq]
            elif msg and msg[0] == "nack" and msg[2] == 0:
                send(birth("py-mcu", boot_id))
                pending = {s: (v, t, 0.0) for s, (v, t, _) in pending.items()}
        if taken == total and not pending:
            print(json.dumps({"taken": taken, "acks": acks, "resends": resends}))
            return 0
        time.sleep(0.002)
    print(json.dumps({"taken": taken, "pending": len(pending), "acks": acks}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
