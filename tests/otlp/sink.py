"""An OTLP trace receiver for the system tests, built on oteltest's sinks.

    python sink.py --port N --protocol grpc|http --out FILE

Starts oteltest's gRPC sink (the OTLP trace, metrics and logs services) or its
HTTP sink (OTLP/HTTP, protobuf or JSON, on /v1/traces) on port N and writes
every span it receives to FILE as one JSON line, flushed per line:

    {"trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>"|"",
     "name": ..., "kind": "SPAN_KIND_SERVER"|..., "service": <resource service.name>,
     "attributes": {key: value}, "status": "STATUS_CODE_UNSET"|"STATUS_CODE_OK"|"STATUS_CODE_ERROR",
     "start_unix_nano": n, "end_unix_nano": n}

Prints "ready" on stdout once the port accepts connections; "address already
in use" and exit 1 when the port was taken. SIGTERM or SIGINT stops it (exit 0).
Metrics and logs are accepted and dropped.

Both listen on 127.0.0.1 only. oteltest 0.49.0 binds 0.0.0.0 (and its gRPC
server with gRPC's default SO_REUSEPORT, which would let two tests' sinks
share a port silently): the gRPC sink here builds its server itself, with
oteltest's servicers; the HTTP sink is oteltest's, with the server class its
thread looks up replaced by one that binds loopback.
"""

import argparse
import errno
import json
import logging
import signal
import sys
import threading
from concurrent import futures
from http.server import HTTPServer

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
import oteltest.sink
from oteltest.sink import GrpcSink, HttpSink
from oteltest.sink.handler import RequestHandler
from oteltest.sink.private import (
    _LogsServiceServicer,
    _MetricsServiceServicer,
    _TraceServiceServicer,
)


def any_value(v):
    """An OTLP AnyValue as plain JSON."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def span_records(request):
    """One dict per span of an ExportTraceServiceRequest."""
    for rs in request.resource_spans:
        service = attributes(rs.resource.attributes).get("service.name", "")
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": trace_pb2.Span.SpanKind.Name(span.kind),
                    "service": service,
                    "attributes": attributes(span.attributes),
                    "status": trace_pb2.Status.StatusCode.Name(span.status.code),
                    "start_unix_nano": span.start_time_unix_nano,
                    "end_unix_nano": span.end_time_unix_nano,
                }


class JsonLinesHandler(RequestHandler):
    """Writes spans to a file; called from the sinks' server threads."""

    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()

    def handle_trace(self, request, headers):  # noqa: ARG002
        lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in span_records(request)]
        with self.lock:
            for line in lines:
                self.out.write(line)
                self.out.flush()

    def handle_metrics(self, request, headers):
        pass

    def handle_logs(self, request, headers):
        pass


class LoopbackGrpcSink(GrpcSink):
    """oteltest's GrpcSink with its servicers, on 127.0.0.1, no SO_REUSEPORT."""

    def __init__(self, request_handler, logger, max_workers=10, port=4317):
        # Not GrpcSink.__init__: that binds 0.0.0.0 before we could change it.
        self.svr = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            options=[("grpc.so_reuseport", 0)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceServiceServicer(request_handler.handle_trace), self.svr
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsServiceServicer(request_handler.handle_metrics), self.svr
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
            _LogsServiceServicer(request_handler.handle_logs), self.svr
        )
        self.logger = logger
        self.port = port
        # Raises RuntimeError when the port cannot be bound.
        self.svr.add_insecure_port(f"127.0.0.1:{port}")


class LoopbackHTTPServer(HTTPServer):
    """HttpSink.run_server makes its server as HTTPServer(("", port), ...),
    looked up in oteltest.sink at call time: this one binds 127.0.0.1."""

    def __init__(self, address, handler):
        super().__init__(("127.0.0.1", address[1]), handler)


class ReportingHttpSink(HttpSink):
    """oteltest's HttpSink, keeping the error when its server cannot bind."""

    bind_error = None

    def run_server(self):
        try:
            super().run_server()
        except OSError as e:
            self.bind_error = e


def start_grpc(handler, logger, port):
    try:
        sink = LoopbackGrpcSink(handler, logger, port=port)
    except RuntimeError as e:
        # gRPC says only "Failed to bind"; the port was free moments ago.
        print(f"address already in use: 127.0.0.1:{port} ({e})", flush=True)
        sys.exit(1)
    sink.start()
    return sink


def start_http(handler, logger, port):
    oteltest.sink.HTTPServer = LoopbackHTTPServer
    sink = ReportingHttpSink(handler, logger, port=port)
    sink.start()
    # The server binds in its thread: wait until it has, or has failed to.
    while sink.httpd is None and sink.svr_thread.is_alive():
        sink.svr_thread.join(0.01)
    if sink.httpd is None:
        e = sink.bind_error
        if e is not None and e.errno == errno.EADDRINUSE:
            print(f"address already in use: port {port}", flush=True)
        else:
            print(f"http sink did not start: {e!r}", flush=True)
        sys.exit(1)
    return sink


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--out", required=True, help="JSON-lines file of the received spans")
    args = p.parse_args()

    logging.basicConfig(level=logging.WARNING, format="sink: %(message)s")
    logger = logging.getLogger("otlp-sink")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    with open(args.out, "a", encoding="utf-8") as out:
        handler = JsonLinesHandler(out)
        start = start_grpc if args.protocol == "grpc" else start_http
        sink = start(handler, logger, args.port)
        print("ready", flush=True)
        while not stop.wait(0.2):
            pass
        sink.stop()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
