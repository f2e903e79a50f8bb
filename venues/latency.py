"""Latency distributions for the simulated venue, sampled with a seeded ``random.Random``.

Three shapes, all in integer nanoseconds:

* :meth:`LatencyModel.constant` - the same delay every time;
* :meth:`LatencyModel.lognormal` - ``median_ns * exp(sigma * N(0, 1))`` (the median is exact, the
  right tail is long, which is what measured exchange round trips look like);
* :meth:`LatencyModel.empirical` - one of a list of measured latencies, drawn uniformly.

A model never reads wall time; it draws from the RNG it is given (:meth:`LatencyModel.sample`) or
from its own seeded generator (:meth:`LatencyModel.stream`, vectorised, for per-event hot paths),
so a simulation is reproducible for a seed.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from marketdata.errors import ConfigError

STREAM_BLOCK = 4096
"""Latencies drawn at once by :meth:`LatencyModel.stream`."""
_STREAM_TAG = 0x6D64   # second seed word: a stream never shares a generator state with another use of the seed

LatencyKind = Literal["constant", "lognormal", "empirical"]


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """A latency distribution (ns). Build it with one of the class methods."""

    kind: LatencyKind = "constant"
    value_ns: int = 0
    sigma: float = 0.0
    samples_ns: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.value_ns < 0:
            raise ConfigError(f"latency {self.value_ns} ns must be >= 0", key="latency")
        if self.kind == "lognormal" and (self.sigma < 0 or not math.isfinite(self.sigma)):
            raise ConfigError(f"lognormal sigma {self.sigma} must be a finite number >= 0", key="sigma")
        if self.kind == "empirical":
            if not self.samples_ns:
                raise ConfigError("empirical latency needs at least one sample", key="samples_ns")
            if any(s < 0 for s in self.samples_ns):
                raise ConfigError("empirical latency samples must be >= 0 ns", key="samples_ns")

    @classmethod
    def constant(cls, ns: int) -> LatencyModel:
        """Always ``ns`` nanoseconds."""
        return cls("constant", int(ns))

    @classmethod
    def lognormal(cls, median_ns: int, sigma: float) -> LatencyModel:
        """Lognormal with the given median (ns) and log-space standard deviation ``sigma``."""
        return cls("lognormal", int(median_ns), float(sigma))

    @classmethod
    def empirical(cls, samples_ns: Sequence[int]) -> LatencyModel:
        """Uniform draw from measured latencies (ns)."""
        return cls("empirical", 0, 0.0, tuple(int(s) for s in samples_ns))

    def sample(self, rng: random.Random) -> int:
        """One latency in ns (>= 0). Constant models do not consume randomness."""
        if self.kind == "constant":
            return self.value_ns
        if self.kind == "lognormal":
            if self.sigma == 0.0:
                return self.value_ns
            return int(self.value_ns * math.exp(self.sigma * rng.gauss(0.0, 1.0)))
        return self.samples_ns[rng.randrange(len(self.samples_ns))]

    @property
    def is_zero(self) -> bool:
        return self.kind == "constant" and self.value_ns == 0

    def stream(self, seed: int, *, block: int = STREAM_BLOCK) -> Iterator[int]:
        """An endless iterator of latencies (ns) from this distribution, drawn ``block`` at a time
        (vectorised) from its own generator seeded with ``seed``: the same seed gives the same
        sequence. For per-event draws on hot paths (the simulated market-data feed): ``next()`` on
        it is a C call; a constant model never draws."""
        if self.kind == "constant" or (self.kind == "lognormal" and self.sigma == 0.0):
            return itertools.repeat(self.value_ns)
        gen = np.random.default_rng([seed % (1 << 64), _STREAM_TAG])
        if self.kind == "lognormal":
            median, sigma = float(self.value_ns), self.sigma

            def draw() -> list[int]:
                # truncation toward zero, as int() in sample()
                return list((median * np.exp(sigma * gen.standard_normal(block))).astype(np.int64).tolist())
        else:
            table = np.asarray(self.samples_ns, dtype=np.int64)

            def draw() -> list[int]:
                return list(table[gen.integers(0, len(table), block)].tolist())
        return itertools.chain.from_iterable(draw() for _ in itertools.count())


