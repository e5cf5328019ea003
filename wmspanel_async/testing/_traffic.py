"""The simulated audience: figures that move like a real service, the same for the same seed.

Each stream's viewers follow a random walk in log space that reverts to the mean in about a
minute (an AR(1) process, computed from the shocks of the last few minutes so that the value
at a given second depends only on the seed and that second, never on which requests came
before), times a daily rhythm. The viewers are split over the stream's servers and over
countries by their weights with the largest-remainder method, so every total is the exact sum
of its parts: a slice is the sum of its streams on its servers, a server the sum of its streams.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter
from collections.abc import Sequence

import attrs

from ._accounts import Account, Stream

#: Seconds between two values of the walk; figures change once per step.
STEP = 1.0
#: Seconds over which the walk forgets where it was.
_REVERSION = 60.0
_PHI = math.exp(-STEP / _REVERSION)
#: Shocks older than this many steps weigh less than 0.3 % and are left out.
_MEMORY = 350
_BLOCK = 256
_GEO_JITTER = 0.1
_SECONDS_PER_DAY = 86_400.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

#: The number of countries ``geo`` lists at most.
GEO_TOP = 20


@attrs.frozen
class Figures:
    """Realtime figures of a set of (stream, server) cells.

    Attributes:
        connected: Viewers now.
        bandwidth: Bits per second now.
        geo: Viewers per country.
    """

    connected: int = 0
    bandwidth: int = 0
    geo: Counter[str] = attrs.field(factory=Counter, eq=False)

    def top_geo(self) -> list[list[str | int]]:
        """Return the top 20 countries as ``[alpha2, connected]`` pairs, most viewers first."""
        ranked = sorted(
            ((country, count) for country, count in self.geo.items() if count > 0),
            key=lambda item: (-item[1], item[0]),
        )
        return [[country, count] for country, count in ranked[:GEO_TOP]]


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return [0] * len(weights)
    quotas = [total * weight / weight_sum for weight in weights]
    shares = [int(quota) for quota in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (shares[i] - quotas[i], i))
    for index in by_remainder[: total - sum(shares)]:
        shares[index] += 1
    return shares


class _Walk:
    """The log-space deviation of one stream's audience from its mean, per step."""

    def __init__(self, seed: int, stream: Stream) -> None:
        self._name = f"{seed}:{stream.id}"
        # Scale the shocks so that the walk's standard deviation is the stream's volatility.
        self._shock_scale = stream.volatility * math.sqrt(1 - _PHI**2)
        self._blocks: dict[int, list[float]] = {}

    def _shock(self, step: int) -> float:
        block, index = divmod(step, _BLOCK)
        shocks = self._blocks.get(block)
        if shocks is None:
            if len(self._blocks) > 4:
                self._blocks.clear()
            rng = random.Random(f"walk:{self._name}:{block}")  # noqa: S311 - not crypto
            shocks = [rng.gauss(0.0, 1.0) for _ in range(_BLOCK)]
            self._blocks[block] = shocks
        return shocks[index]

    def at(self, step: int) -> float:
        if self._shock_scale == 0:
            return 0.0
        total = 0.0
        weight = 1.0
        for lag in range(_MEMORY):
            total += weight * self._shock(step - lag)
            weight *= _PHI
        return total * self._shock_scale


class Traffic:
    """The audience of one account, as a pure function of the seed and the time.

    Args:
        account: Whose streams to simulate.
        seed: Same seed, same figures at the same time.
    """

    def __init__(self, account: Account, seed: int) -> None:
        self._account = account
        self._seed = seed
        self._walks = {stream.id: _Walk(seed, stream) for stream in account.streams}
        self._cached_step: int | None = None
        self._cells: dict[tuple[str, str], Figures] = {}

    def cells(self, now: dt.datetime) -> dict[tuple[str, str], Figures]:
        """Return the figures of every (stream id, server id) cell at ``now``."""
        step = math.floor((now - _EPOCH).total_seconds() / STEP)
        if step != self._cached_step:
            self._cells = {}
            for stream in self._account.streams:
                self._cells.update(self._stream_cells(stream, step))
            self._cached_step = step
        return self._cells

    def figures(
        self,
        now: dt.datetime,
        *,
        servers: Sequence[str],
        streams: Sequence[str] | None = None,
    ) -> Figures:
        """Return the sum of the cells on ``servers`` (and of ``streams``, if given) at ``now``."""
        wanted_servers = set(servers)
        wanted_streams = None if streams is None else set(streams)
        connected = bandwidth = 0
        geo: Counter[str] = Counter()
        for (stream_id, server_id), cell in self.cells(now).items():
            if server_id in wanted_servers and (
                wanted_streams is None or stream_id in wanted_streams
            ):
                connected += cell.connected
                bandwidth += cell.bandwidth
                geo.update(cell.geo)
        return Figures(connected, bandwidth, geo)

    def _stream_cells(self, stream: Stream, step: int) -> dict[tuple[str, str], Figures]:
        seconds = step * STEP
        hour = (seconds % _SECONDS_PER_DAY) / 3600.0
        rhythm = 1.0 + stream.daily_swing * math.cos(2 * math.pi * (hour - stream.peak_hour) / 24)
        # Subtracting half the variance keeps the mean of exp(walk) at 1.
        level = math.exp(self._walks[stream.id].at(step) - stream.volatility**2 / 2)
        viewers = max(round(stream.audience * max(rhythm, 0.0) * level), 0)

        rng = random.Random(f"geo:{self._seed}:{stream.id}:{step}")  # noqa: S311 - not crypto
        countries = [country for country, _ in stream.countries]
        weights = [
            weight * math.exp(_GEO_JITTER * rng.gauss(0.0, 1.0)) if stream.volatility else weight
            for _, weight in stream.countries
        ]
        cells = {}
        per_server = apportion(viewers, [share for _, share in stream.servers])
        for (server_id, _), connected in zip(stream.servers, per_server, strict=True):
            geo = Counter(
                {
                    country: count
                    for country, count in zip(countries, apportion(connected, weights), strict=True)
                    if count
                }
            )
            cells[stream.id, server_id] = Figures(connected, connected * stream.bitrate, geo)
        return cells
