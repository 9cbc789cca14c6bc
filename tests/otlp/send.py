"""Sends one real OTLP trace export, for the test of the receiver itself.

    python send.py --endpoint http://127.0.0.1:N --protocol grpc|http

One ExportTraceServiceRequest built with opentelemetry-proto: resource
service.name "paymesh-harness-check", a SERVER span "POST /v1/charges" (no
parent) and its CLIENT child "orchestrator charge" with a string, an int, a
double and a bool attribute, status ERROR. gRPC goes through the OTLP
TraceService stub, HTTP is a protobuf POST to /v1/traces. Exits non-zero
unless the receiver accepted it.
"""

import argparse
import urllib.request

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT_ID = bytes.fromhex("b7ad6b7169203331")
CHILD_ID = bytes.fromhex("00f067aa0ba902b7")


def kv(key, **value):
    return KeyValue(key=key, value=AnyValue(**value))


def request():
    root = trace_pb2.Span(
        trace_id=TRACE_ID, span_id=ROOT_ID, name="POST /v1/charges",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_764_000_000_000_000_000, end_time_unix_nano=1_764_000_000_250_000_000,
        attributes=[kv("http.request.method", string_value="POST"), kv("http.response.status_code", int_value=201)],
    )
    child = trace_pb2.Span(
        trace_id=TRACE_ID, span_id=CHILD_ID, parent_span_id=ROOT_ID, name="orchestrator charge",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_764_000_000_010_000_000, end_time_unix_nano=1_764_000_000_200_000_000,
        attributes=[
            kv("paymesh.feature", string_value="charge"), kv("paymesh.attempt", int_value=2),
            kv("paymesh.percent", double_value=12.5), kv("paymesh.shadow", bool_value=True),
        ],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="upstream 503"),
    )
    resource = Resource(attributes=[kv("service.name", string_value="paymesh-harness-check")])
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=[root, child])])]
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    args = p.parse_args()
    if args.protocol == "grpc":
        target = args.endpoint.removeprefix("http://")
        with grpc.insecure_channel(target) as channel:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(request(), timeout=10)
    else:
        req = urllib.request.Request(
            args.endpoint + "/v1/traces", data=request().SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"}, method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, resp.status
    print("sent", flush=True)


if __name__ == "__main__":
    main()
