"""What a simulated account holds: keys, whitelist, servers, streams and data slices.

These are plain frozen values: the simulator reads them, never changes them. Build one by hand
for a test that needs a precise topology, or let :meth:`Account.generate` make a plausible one
from a seed.
"""

from __future__ import annotations

import ipaddress
import random
import re
import uuid
from collections.abc import Iterable
from typing import Any

import attrs

from .._constants import DEFAULT_DAILY_LIMIT, OBJECT_ID

_API_KEY = re.compile(r"[0-9a-f]{32}")

#: Where viewers come from by default: a rough share of a global streaming audience.
COUNTRY_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("US", 24.0),
    ("BR", 9.0),
    ("IN", 8.0),
    ("DE", 6.0),
    ("GB", 6.0),
    ("FR", 5.0),
    ("JP", 4.5),
    ("MX", 4.0),
    ("CA", 3.5),
    ("ES", 3.0),
    ("IT", 3.0),
    ("RU", 3.0),
    ("PL", 2.5),
    ("TR", 2.5),
    ("NL", 2.0),
    ("AR", 2.0),
    ("ID", 2.0),
    ("KR", 1.8),
    ("AU", 1.8),
    ("UA", 1.5),
    ("SE", 1.2),
    ("PH", 1.2),
    ("CO", 1.0),
    ("ZA", 1.0),
    ("PT", 0.8),
    ("BE", 0.8),
    ("CH", 0.7),
    ("AT", 0.6),
    ("CZ", 0.6),
    ("NG", 0.5),
)


def _check_object_id(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not OBJECT_ID.fullmatch(value):
        msg = f"{attribute.name} {value!r} is not 24 lowercase hex digits, as WMSPanel ids are"
        raise ValueError(msg)


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        msg = f"{attribute.name} must be 0 or more, got {value!r}"
        raise ValueError(msg)


def _weights(value: Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    return tuple((str(name), float(weight)) for name, weight in value)


def _ids(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _optional_ids(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen(kw_only=True)
class Server:
    """A media server of the account.

    Attributes:
        id: Its id, 24 hex digits (the long id in the server's page URL).
        name: A name for people.
    """

    id: str = attrs.field(validator=_check_object_id)
    name: str


@attrs.frozen(kw_only=True)
class Stream:
    """A live stream and the audience it draws.

    Viewers follow a seeded random walk (in log space, reverting to the mean in about a minute)
    around ``audience``, swung by a daily rhythm that peaks at ``peak_hour`` UTC. Bandwidth is
    viewers times ``bitrate``.

    Attributes:
        id: Its id, 24 hex digits.
        name: The application/stream name, for example ``"live/news"``.
        bitrate: Bits per second that one viewer takes.
        audience: Mean number of viewers over a day.
        servers: The servers it is played from, each with its share of the viewers.
        countries: Where its viewers come from, each country with its weight.
        peak_hour: The UTC hour (0-24) when the audience is largest.
        daily_swing: How far the daily rhythm moves the audience, as a fraction (0: flat).
        volatility: Spread of the random walk in log space (0: no randomness).
    """

    id: str = attrs.field(validator=_check_object_id)
    name: str
    bitrate: int = attrs.field(validator=_positive)
    audience: float = attrs.field(validator=_positive)
    servers: tuple[tuple[str, float], ...] = attrs.field(converter=_weights)
    countries: tuple[tuple[str, float], ...] = attrs.field(
        default=COUNTRY_WEIGHTS, converter=_weights
    )
    peak_hour: float = 20.0
    daily_swing: float = attrs.field(default=0.45, validator=_positive)
    volatility: float = attrs.field(default=0.15, validator=_positive)


@attrs.frozen(kw_only=True)
class Slice:
    """A data slice: a named view on some servers and, optionally, some of their streams.

    Attributes:
        id: Its id, 24 hex digits; it never changes.
        name: The name ``GET /v1/data_slices`` shows.
        servers: Ids of the servers it covers.
        streams: Ids of the streams it covers, or ``None`` for every stream on its servers.
        lite: A lite slice: totals only, no per-stream realtime figures.
    """

    id: str = attrs.field(validator=_check_object_id)
    name: str
    servers: tuple[str, ...] = attrs.field(converter=_ids)
    streams: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_ids)
    lite: bool = False


@attrs.frozen(kw_only=True)
class APIKey:
    """An API key of the account.

    Attributes:
        key: The key itself, 32 hex digits.
        slices: Ids of the slices a user's key may see, or ``None`` for an account-wide key.
    """

    key: str = attrs.field(repr=False)
    slices: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_ids)

    @key.validator
    def _check_key(self, _: attrs.Attribute[str], value: str) -> None:
        if not _API_KEY.fullmatch(value):
            msg = "an API key is 32 lowercase hex digits"
            raise ValueError(msg)


def _keys(value: Iterable[APIKey]) -> tuple[APIKey, ...]:
    return tuple(value)


def _servers(value: Iterable[Server]) -> tuple[Server, ...]:
    return tuple(value)


def _streams(value: Iterable[Stream]) -> tuple[Stream, ...]:
    return tuple(value)


def _slices(value: Iterable[Slice]) -> tuple[Slice, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Account:
    """A WMSPanel account as the simulator serves it.

    Attributes:
        client_id: The account's client id (a UUID).
        keys: Its API keys; at least one.
        servers: Its servers.
        streams: Its streams.
        slices: Its data slices, in the order ``GET /v1/data_slices`` lists them.
        whitelist: Networks (``"203.0.113.0/24"``, ``"127.0.0.1"``) allowed to call the API;
            empty means any address.
        daily_limit: Calls allowed per UTC day, all keys together.

    Raises:
        ValueError: An id is malformed, or a slice, stream or key names something the
            account does not have.
    """

    client_id: str
    keys: tuple[APIKey, ...] = attrs.field(converter=_keys)
    servers: tuple[Server, ...] = attrs.field(converter=_servers)
    streams: tuple[Stream, ...] = attrs.field(converter=_streams)
    slices: tuple[Slice, ...] = attrs.field(converter=_slices)
    whitelist: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    daily_limit: int = DEFAULT_DAILY_LIMIT

    def __attrs_post_init__(self) -> None:
        if not self.keys:
            msg = "an account needs at least one API key"
            raise ValueError(msg)
        if self.daily_limit < 0:
            msg = f"daily_limit must be 0 or more, got {self.daily_limit!r}"
            raise ValueError(msg)
        for network in self.whitelist:
            ipaddress.ip_network(network, strict=False)  # raises ValueError if malformed
        servers = {server.id for server in self.servers}
        streams = {stream.id for stream in self.streams}
        slices = {data_slice.id for data_slice in self.slices}
        for stream in self.streams:
            _check_known(stream.name, "server", (sid for sid, _ in stream.servers), servers)
        for data_slice in self.slices:
            _check_known(data_slice.name, "server", data_slice.servers, servers)
            _check_known(data_slice.name, "stream", data_slice.streams or (), streams)
        for api_key in self.keys:
            _check_known("an API key", "data slice", api_key.slices or (), slices)

    @property
    def api_key(self) -> str:
        """The first account-wide key (or the first key, if all are users' keys)."""
        wide = [api_key.key for api_key in self.keys if api_key.slices is None]
        return (wide or [self.keys[0].key])[0]

    @classmethod
    def sample(cls) -> Account:
        """Return the account behind WMSPanel's documented sample answers.

        Its two slices are those of the documented ``data_slices`` answer, and the realtime
        figures of the first are those of the documented ``realtime_data`` answer, at any time:
        one viewer from Brazil taking 267,784 bits per second.
        """
        server = Server(id="53e03b5a78a6fc8593000001", name="nimble-1")
        stream = Stream(
            id="53e03d1078a6fc8596000002",
            name="live/stream",
            bitrate=267_784,
            audience=1,
            servers=[(server.id, 1.0)],
            countries=[("BR", 1.0)],
            daily_swing=0,
            volatility=0,
        )
        return cls(
            client_id="6b3b7c5e-8d1a-4f4e-9a57-3c0f8e2b1d10",
            keys=[APIKey(key="5a2f0c1e9d8b7a6f5e4d3c2b1a0f9e8d")],
            servers=[server],
            streams=[stream],
            slices=[
                Slice(id="53e03c9978a6fc8596000001", name="Full data slice", servers=[server.id]),
                Slice(id="53e03ca678a6fc8599000001", name="DS2", servers=[server.id], lite=True),
            ],
        )

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        daily_limit: int = DEFAULT_DAILY_LIMIT,
        whitelist: Iterable[str] = (),
    ) -> Account:
        """Make a plausible account from a seed: same seed, same account.

        It has three servers, eight streams, an account-wide key, a user's key that sees only
        the ``Sports`` slice, and four slices: ``All streams``, ``Sports``, ``Europe edge``
        (one server) and ``Edges overview`` (a lite slice of the two edge servers).

        Args:
            seed: Picks ids, keys, audiences and bitrates.
            daily_limit: Calls allowed per UTC day.
            whitelist: Networks allowed to call; empty means any address.
        """
        rng = random.Random(f"wmspanel-account:{seed}")  # noqa: S311 - made-up data, not secrets
        object_id = _ObjectIds(rng)
        origin = Server(id=object_id(), name="origin-ams-1")
        edge_eu = Server(id=object_id(), name="edge-fra-1")
        edge_us = Server(id=object_id(), name="edge-nyc-1")
        home = {"news": "GB", "sports": "BR", "music": "US", "kids": "DE", "tech": "IN"}
        streams = []
        for name, bitrate, audience in (
            ("live/news", 2_500_000, 900),
            ("live/sports-1", 4_500_000, 2400),
            ("live/sports-2", 4_500_000, 700),
            ("live/music", 1_500_000, 500),
            ("live/kids", 1_200_000, 250),
            ("live/tech-talks", 2_000_000, 120),
            ("radio/jazz", 128_000, 300),
            ("backup/news-low", 800_000, 40),
        ):
            topic = next((key for key in home if key in name), "news")
            countries = [
                (
                    country,
                    weight * rng.lognormvariate(0, 0.4) * (6 if country == home[topic] else 1),
                )
                for country, weight in COUNTRY_WEIGHTS
            ]
            streams.append(
                Stream(
                    id=object_id(),
                    name=name,
                    bitrate=bitrate,
                    audience=round(audience * rng.uniform(0.7, 1.3)),
                    servers=[
                        (origin.id, rng.uniform(0.05, 0.15)),
                        (edge_eu.id, rng.uniform(0.3, 0.6)),
                        (edge_us.id, rng.uniform(0.3, 0.6)),
                    ],
                    countries=countries,
                    peak_hour=rng.uniform(17, 22),
                )
            )
        sports = [stream.id for stream in streams if "sports" in stream.name]
        all_servers = [origin.id, edge_eu.id, edge_us.id]
        edges = [edge_eu.id, edge_us.id]
        slices = [
            Slice(id=object_id(), name="All streams", servers=all_servers),
            Slice(id=object_id(), name="Sports", servers=all_servers, streams=sports),
            Slice(id=object_id(), name="Europe edge", servers=[edge_eu.id]),
            Slice(id=object_id(), name="Edges overview", servers=edges, lite=True),
        ]
        return cls(
            client_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            keys=[
                APIKey(key=f"{rng.getrandbits(128):032x}"),
                APIKey(key=f"{rng.getrandbits(128):032x}", slices=[slices[1].id]),
            ],
            servers=[origin, edge_eu, edge_us],
            streams=streams,
            slices=slices,
            whitelist=tuple(whitelist),
            daily_limit=daily_limit,
        )


def _check_known(owner: str, kind: str, ids: Iterable[str], known: set[str]) -> None:
    for item in ids:
        if item not in known:
            msg = f"{owner} names {kind} {item!r}, which the account does not have"
            raise ValueError(msg)


class _ObjectIds:
    """Makes ids shaped like MongoDB object ids: a 2014-2024 timestamp, random bits, a counter."""

    def __init__(self, rng: random.Random) -> None:
        self._prefix = f"{rng.randrange(0x53000000, 0x66000000):08x}{rng.getrandbits(40):010x}"
        self._counter = 0

    def __call__(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._counter:06x}"
