"""Seeded fault injection for serial links, to test the protocol's recovery.

:class:`FaultyLink` wraps any pyserial-like port (``read(n)``, ``write(data)``, ``timeout``)
and corrupts, drops, duplicates, repeats and delays the bytes going each way, as configured
by one :class:`Faults` per direction. With the same seed and the same traffic it injects the
same faults. Standard library only.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Faults:
    """Fault rates for one direction. Byte rates apply to every byte independently; chunk
    rates to each write() (usually one frame) or to each block read from the port."""

    corrupt: float = 0.0  # per byte: flip one random bit
    drop: float = 0.0  # per byte: lose it
    duplicate: float = 0.0  # per byte: deliver it twice
    repeat: float = 0.0  # per chunk: deliver the whole chunk twice
    delay: float = 0.0  # per chunk: hold it back for up to max_delay seconds
    max_delay: float = 0.02

    @property
    def touches_bytes(self) -> bool:
        return self.corrupt > 0 or self.drop > 0 or self.duplicate > 0


@dataclass
class FaultCounts:
    corrupted: int = 0
    dropped: int = 0
    duplicated: int = 0
    repeated: int = 0
    delayed: int = 0

    @property
    def total(self) -> int:
        return self.corrupted + self.dropped + self.duplicated + self.repeated + self.delayed


class FaultyLink:
    """A pyserial-like port that injects faults into what passes through it.

    ``tx`` faults hit the bytes written (host to device), ``rx`` faults the bytes read
    (device to host). Both can be changed between calls, e.g. to fault one exchange only.
    Delayed reads also return the data in pieces, exercising the decoder's reassembly.
    """

    def __init__(self, port: Any, *, seed: int = 0, tx: Faults | None = None,
                 rx: Faults | None = None):
        self.port = port
        self.tx = tx or Faults()
        self.rx = rx or Faults()
        self.tx_counts = FaultCounts()
        self.rx_counts = FaultCounts()
        self._random = random.Random(seed)
        self._rx_pending = bytearray()

    @property
    def name(self) -> str:
        return str(getattr(self.port, "name", None) or getattr(self.port, "port", None)
                   or "serial port")

    @property
    def timeout(self) -> float | None:
        return self.port.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.port.timeout = value

    @property
    def in_waiting(self) -> int:
        return len(self._rx_pending)

    def write(self, data: bytes) -> int:
        chunk = self._mangle_chunk(bytes(data), self.tx, self.tx_counts)
        if chunk:
            self.port.write(chunk)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if not self._rx_pending:
            waiting = getattr(self.port, "in_waiting", 0) or 0
            data = self.port.read(max(size, waiting))
            self._rx_pending += self._mangle_chunk(data, self.rx, self.rx_counts)
        size = min(size, len(self._rx_pending))
        if size > 1 and self._roll(self.rx.delay):  # a piece now, the rest later
            size = self._random.randint(1, size)
        data = bytes(self._rx_pending[:size])
        del self._rx_pending[:size]
        return data

    def close(self) -> None:
        close = getattr(self.port, "close", None)
        if close is not None:
            close()

    def _roll(self, probability: float) -> bool:
        return probability > 0 and self._random.random() < probability

    def _mangle_chunk(self, data: bytes, faults: Faults, counts: FaultCounts) -> bytes:
        if not data:
            return data
        if faults.touches_bytes:
            data = self._mangle_bytes(data, faults, counts)
        if self._roll(faults.repeat):
            counts.repeated += 1
            data = data + data
        if self._roll(faults.delay):
            counts.delayed += 1
            time.sleep(self._random.uniform(0, faults.max_delay))
        return data

    def _mangle_bytes(self, data: bytes, faults: Faults, counts: FaultCounts) -> bytes:
        out = bytearray()
        for byte in data:
            roll = self._random.random()
            if roll < faults.drop:
                counts.dropped += 1
                continue
            roll -= faults.drop
            if roll < faults.corrupt:
                counts.corrupted += 1
                byte ^= 1 << self._random.randrange(8)
            elif roll - faults.corrupt < faults.duplicate:
                counts.duplicated += 1
                out.append(byte)
            out.append(byte)
        return bytes(out)
