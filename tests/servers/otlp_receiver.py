"""A small real OTLP/HTTP receiver for tests: what a collector's `otlp` receiver accepts.

It answers `POST /v1/traces` and `POST /v1/metrics` with protobuf bodies (the SDK's
`opentelemetry-exporter-otlp-proto-http`, optionally gzip-compressed), decodes them with the
`opentelemetry-proto` message types and keeps every span (flattened, with the `service.name`
of the resource that sent it) and every metric name per service, for a test to read.
"""

import gzip
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentcom_common.testing import free_port

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's `service.name`
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str  # "" for a root
    name: str
    kind: str  # SPAN_KIND_SERVER, ...
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(pairs)
    return {kv.key: _value(kv.value) for kv in items}


@dataclass
class OtlpReceiver:
    spans: list[ReceivedSpan] = field(default_factory=list[ReceivedSpan])
    metrics: dict[str, set[str]] = field(default_factory=dict[str, set[str]])  # service: names
    requests: int = 0
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to (the SDK appends `/v1/...`)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self.traces)
        app.router.add_post("/v1/metrics", self.metrics_in)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]

    @staticmethod
    async def _body(request: web.Request) -> bytes | web.Response:
        if request.content_type != PROTOBUF:  # the JSON encoding is not what our SDK sends
            return web.Response(status=415, text=f"expected {PROTOBUF}")
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body

    async def traces(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        self.requests += 1
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=service,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=Span.SpanKind.Name(span.kind),
                            attributes=_attributes(span.attributes),
                        )
                    )
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type=PROTOBUF)

    async def metrics_in(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        self.requests += 1
        export = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in export.resource_metrics:
            service = str(_attributes(resource_metrics.resource.attributes).get("service.name"))
            names = self.metrics.setdefault(service, set())
            for scope_metrics in resource_metrics.scope_metrics:
                names.update(m.name for m in scope_metrics.metrics)
        reply = ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type=PROTOBUF)
