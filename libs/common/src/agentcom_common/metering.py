"""OTel instruments of one process and their Prometheus text (each service's `/metrics`).

Instruments are made with `meter(scope)` from OTel's global provider. One made before
`install()` ran is a proxy that starts recording once it has (the OTel API defers to the real
provider), so modules may make theirs at first use without caring about start order. Recording
is an in-memory add; nothing is exported on the caller's path: `/metrics` collects on scrape and
the OTLP reader (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) exports on its own thread.

Prometheus names follow the OTLP translation the collector's Prometheus exporter uses, so a
dashboard query reads the same either way: dots become `_`, the unit is appended
(`s` → `_seconds`, `By` → `_bytes`, `1` on a gauge → `_ratio`, `{token}` → nothing), and a
monotonic sum ends in `_total`.
"""

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    MetricReader,
    Sum,
)
from opentelemetry.sdk.resources import Resource

log = logging.getLogger(__name__)

# one database statement or RPC: sub-millisecond to seconds
FAST_SECONDS_BUCKETS: Sequence[float] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
)
SECONDS_BUCKETS: Sequence[float] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)
"""Bounds for durations from a claim (ms) to a task's run (an hour): the semantic conventions'
HTTP bounds stretched to task lengths."""

_scrape: list[InMemoryMetricReader] = []  # the one reader `/metrics` collects from


def install(resource: Resource, exporters: Sequence[MetricReader] = ()) -> None:
    """Install the process's meter provider: the scrape reader plus `exporters` (OTLP).

    Once per process (OTel refuses a second global provider): a second call is ignored.
    """
    if _scrape:
        return
    reader = InMemoryMetricReader()
    _scrape.append(reader)
    metrics.set_meter_provider(
        MeterProvider(
            resource=resource,
            metric_readers=[reader, *exporters],
            # the scrape shows no exemplars; only OTLP carries them. Without it the SDK would
            # still pick one per histogram record from the current span (the queue records
            # one per task)
            exemplar_filter=None if exporters else AlwaysOffExemplarFilter(),
        )
    )


def meter(scope: str) -> Meter:
    return metrics.get_meter(scope)


Points = Mapping[tuple[tuple[str, str], ...], float]


class Sampled:
    """An observable gauge whose points are set by a periodic read (a count in Postgres), not
    on every change: reading state at scrape time would need I/O inside OTel's sync callback.

    A point missing from the latest `set` is gone from the next scrape (a lane that emptied is
    reported as 0 only if the read says 0). `part` keeps the points of several owners in one
    process apart (each service's outbox when tests run them together).
    """

    def __init__(
        self, m: Meter, name: str, unit: str, description: str, *, total: bool = False
    ) -> None:
        """`total`: the read is a running total kept in the database (a count of rows that
        only grows), exported as a counter, so it is right across restarts and replicas."""
        self._parts: dict[str, Points] = {}
        make = m.create_observable_counter if total else m.create_observable_gauge
        make(name, [self._observe], unit=unit, description=description)

    def set(self, points: Points, part: str = "") -> None:
        self._parts[part] = dict(points)  # one assignment: the exporter thread reads whole dicts

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(value, dict(attrs))
            for points in list(self._parts.values())
            for attrs, value in points.items()
        ]


Sampler = Callable[[], Awaitable[None]]


def zero(counter: Counter, attr_sets: Iterable[Mapping[str, str]]) -> None:
    """Make each series of `counter` exist at 0: a counter never added to has no series, so a
    query on it (a dashboard panel) would show "no data" instead of 0."""
    for attrs in attr_sets:
        counter.add(0, attrs)


async def sample_forever(every: timedelta, samplers: Sequence[Sampler]) -> None:
    """Run every sampler each `every`; one that fails is logged and tried again next time."""
    while True:
        for sample in samplers:
            try:
                await sample()
            except Exception:  # a gauge that cannot be read now stays as it was
                log.warning("metrics.sample_failed", exc_info=True)
        await asyncio.sleep(every.total_seconds())


# Prometheus text exposition (format 0.0.4) ------------------------------------------------

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "USD": "usd"}


def prometheus_name(metric: Metric) -> str:
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", metric.name)
    unit = metric.unit or ""
    suffix = _UNITS.get(unit, "")
    if unit == "1" and isinstance(metric.data, Gauge):
        suffix = "ratio"
    if suffix and not name.endswith(suffix):
        name = f"{name}_{suffix}"
    if isinstance(metric.data, Sum) and metric.data.is_monotonic:
        name = f"{name}_total"
    return name


def _labels(attrs: Mapping[str, object], extra: str = "") -> str:
    parts = [
        f'{re.sub(r"[^a-zA-Z0-9_]", "_", k)}="{_escape(str(v))}"' for k, v in sorted(attrs.items())
    ]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _lines(name: str, metric: Metric) -> list[str]:
    data = metric.data
    out: list[str] = []
    if isinstance(data, Histogram):
        for p in data.data_points:
            attrs = dict(p.attributes or {})
            running = 0
            for bound, count in zip(p.explicit_bounds, p.bucket_counts, strict=False):
                running += count
                le = 'le="' + _number(bound) + '"'
                out.append(f"{name}_bucket{_labels(attrs, le)} {running}")
            inf = 'le="+Inf"'
            out.append(f"{name}_bucket{_labels(attrs, inf)} {p.count}")
            out.append(f"{name}_sum{_labels(attrs)} {_number(p.sum)}")
            out.append(f"{name}_count{_labels(attrs)} {p.count}")
    elif isinstance(data, Sum | Gauge):
        for p in data.data_points:
            out.append(f"{name}{_labels(dict(p.attributes or {}))} {_number(p.value)}")
    return out


def _kind(metric: Metric) -> str:
    if isinstance(metric.data, Histogram):
        return "histogram"
    if isinstance(metric.data, Sum) and metric.data.is_monotonic:
        return "counter"
    return "gauge"


def render() -> str:
    """Everything recorded in this process so far, as Prometheus text ("" before `install`)."""
    if not _scrape:
        return ""
    data = _scrape[0].get_metrics_data()
    families: dict[str, tuple[Metric, list[str]]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                name = prometheus_name(metric)
                families.setdefault(name, (metric, []))[1].extend(_lines(name, metric))
    out: list[str] = []
    for name, (metric, lines) in sorted(families.items()):
        if not lines:
            continue
        doc = _escape(metric.description or metric.name)
        out += [f"# HELP {name} {doc}", f"# TYPE {name} {_kind(metric)}", *lines]
    return "\n".join(out) + "\n" if out else ""
