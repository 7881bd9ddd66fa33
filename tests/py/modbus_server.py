"""A pymodbus server with a known map, for the Modbus e2e tests.

Usage: modbus_server.py PORT                   Modbus TCP on 127.0.0.1:PORT
       modbus_server.py --rtu TTY [--corrupt-every N]
                                               Modbus RTU on the serial
                                               device TTY (one end of a
                                               socat pty pair); units 3 and
                                               up never answer, as absent
                                               slaves; with --corrupt-every,
                                               every Nth reply leaves with
                                               one bit flipped, as on a
                                               noisy line

Unit 1 serves every data type in every word order at fixed addresses. The
registers are written here from the expected values with struct.pack, so
they do not depend on the agent's decoder. tests/tests/e2e/modbus.rs holds
the same table of (address, type, order, value). Addresses not listed here
(for example holding register 60) are unmapped and answer with exception
0x02 (illegal data address). Unit 2 (a second device behind the same
address, as behind a serial gateway) serves UNIT2_HOLDING.

Word orders, for a value of 2 or 4 registers (byte A most significant):
  ABCD  big-endian bytes, most significant register first
  CDAB  big-endian registers, least significant register first
  BADC  bytes swapped inside each register, most significant register first
  DCBA  little-endian bytes, least significant register first
"""

import argparse
import asyncio
import struct
import sys

from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

FORMATS = {
    "u16": "H", "i16": "h", "u32": "I", "i32": "i",
    "u64": "Q", "i64": "q", "f32": "f", "f64": "d",
}

# (holding register, type, order, value)
HOLDING = [
    (0, "u16", "ABCD", 65000),
    (1, "i16", "ABCD", -1234),
    (2, "u16", "BADC", 0x1234),
    (10, "u32", "ABCD", 3000000000),
    (12, "u32", "CDAB", 3000000000),
    (14, "i32", "BADC", -123456789),
    (16, "i32", "DCBA", -123456789),
    (20, "f32", "ABCD", 12.375),
    (22, "f32", "CDAB", 12.375),
    (24, "f32", "BADC", -0.5),
    (26, "f32", "DCBA", 3.25),
    (30, "u64", "ABCD", 0x0001020304050607),
    (34, "i64", "CDAB", -0x0001020304050607),
    (38, "f64", "BADC", 6.02214076e23),
    (42, "f64", "DCBA", -1.25),
    (46, "i64", "ABCD", -2),
    (52, "i16", "ABCD", 235),  # read with scale 0.1: 23.5
]
BITS_REGISTER = (50, 0b1010_0000_0000_0101)  # bits 0, 2, 13, 15 set
INPUT = [(100, "u16", "ABCD", 4321), (101, "f32", "CDAB", -7.5)]
COILS = {3: True, 4: False}
# Unit 2 behind the same address: one holding register.
UNIT2_HOLDING = [(0, "u16", "ABCD", 222)]
DISCRETE = {7: True}


def registers(data_type, order, value):
    """The registers a device holding `value` sends, in order."""
    fmt = FORMATS[data_type]
    big = order in ("ABCD", "CDAB")
    raw = struct.pack((">" if big else "<") + fmt, value)
    regs = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    # ABCD and DCBA are plain big/little-endian; the other two reverse the
    # register order of those.
    if order in ("CDAB", "BADC"):
        regs.reverse()
    return regs


def blocks(table):
    return [
        SimData(address, values=registers(t, o, v), datatype=DataType.REGISTERS)
        for address, t, o, v in table
    ]


def tracer(corrupt_every, absent_units):
    """A trace_packet hook for the serial server: replies of an absent unit
    are not sent (pymodbus would answer for any unit with an exception),
    and every `corrupt_every`th reply leaves with one bit flipped."""
    sent = 0

    def trace(sending, data):
        nonlocal sent
        if not sending:
            return data
        if data and data[0] in absent_units:
            return b""
        sent += 1
        if not corrupt_every or sent % corrupt_every:
            return data
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x10
        return bytes(flipped)

    return trace


def main():
    holding = blocks(HOLDING) + [
        SimData(BITS_REGISTER[0], values=[BITS_REGISTER[1]], datatype=DataType.REGISTERS)
    ]
    coils = [SimData(a, values=[v], datatype=DataType.BITS) for a, v in COILS.items()]
    discrete = [SimData(a, values=[v], datatype=DataType.BITS) for a, v in DISCRETE.items()]
    unit1 = SimDevice(1, simdata=(coils, discrete, holding, blocks(INPUT)))
    unit2 = SimDevice(2, simdata=blocks(UNIT2_HOLDING))
    devices = [unit1, unit2]
    if sys.argv[1] == "--rtu":
        parser = argparse.ArgumentParser()
        parser.add_argument("--rtu", required=True)
        parser.add_argument("--corrupt-every", type=int, default=0)
        args = parser.parse_args()
        # Units other than 1 and 2 are absent: their requests go unanswered.
        absent = set(range(3, 248))
        server = StartAsyncSerialServer(
            context=devices,
            port=args.rtu,
            baudrate=19200,
            trace_packet=tracer(args.corrupt_every, absent),
        )
    else:
        server = StartAsyncTcpServer(context=devices, address=("127.0.0.1", int(sys.argv[1])))
    asyncio.run(server)


if __name__ == "__main__":
    main()
