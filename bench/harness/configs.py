"""The two proxies' configurations, written so that they do the same work.

Both proxies get every feature on:

| feature        | paymesh-sidecar                                   | Envoy                                                  |
| -------------- | ------------------------------------------------- | ------------------------------------------------------ |
| authentication | `Authorization: Bearer` key, SHA-256, constant-time compare against the client table; key removed, `x-paymesh-client` set | RBAC filter: exact match of the `authorization` header; key removed, `x-paymesh-client` added by the route |
| throttling     | per-client GCRA bucket at 10M/s (never binds)     | `local_ratelimit` token bucket of 10M tokens per second (never binds), enabled and enforced for 100 % |
| access log     | one JSON line per request to a file               | file access log with a `json_format` of the same fields |
| metrics        | Prometheus counters + latency histogram (admin `/metrics`) | Envoy's built-in stats and histograms (admin `/stats/prometheus`) |
| route choice   | sticky bucket per request (charge at 50 %)        | none (Envoy has no such feature; this is sidecar-only work) |
| workers        | `workers: N`                                      | `--concurrency N`                                      |

Envoy's header check is a plain string compare where the sidecar hashes the
key, so the comparison slightly favours Envoy.
"""

import hashlib
import json

# The API key the load generator sends; the sidecar knows only its hash.
API_KEY = "sk_bench_3f9a1c7e5b2d4068"
CLIENT_ID = "bench"
# A rate no benchmark reaches, so throttling costs its full bookkeeping
# but never answers 429.
UNBOUND_RATE = 10_000_000


def sidecar_yaml(*, listen, app, admin, workers, work_dir):
    """The sidecar's config: every feature on, no etcd (migration from the
    config defaults) and no telemetry file (so nothing is ever shed)."""
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    return f"""# Written by bench/harness: every feature on.
listen: "{listen}"
app: "{app}"
admin: "{admin}"
workers: {workers}
clients:
  - id: {CLIENT_ID}
    api_key_sha256: "{digest}"
    rate: {{ per_second: {UNBOUND_RATE}, burst: {UNBOUND_RATE} }}
migration:
  etcd_endpoints: []
  cache_file: {work_dir}/sidecar-migration.json
  # Half the charges go to each path, so the route choice does real work.
  defaults: {{ charge: 50, refund: 0, disbursement: 0 }}
overload:
  # Absent on purpose: without telemetry the sidecar never sheds, so the
  # access log and the detailed metrics stay on for the whole run.
  telemetry_file: {work_dir}/no-telemetry.json
  events_file: {work_dir}/sidecar-switch-events.jsonl
access_log:
  path: {work_dir}/sidecar-access.log
"""


def envoy_yaml(*, listen_port, upstream_port, admin_port, access_log):
    """Envoy with the same features; JSON (a subset of YAML) so no YAML
    library is needed."""
    pct100 = {"numerator": 100, "denominator": "HUNDRED"}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "public",
        "codec_type": "HTTP1",
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": access_log,
                    "log_format": {
                        "json_format": {
                            "time": "%START_TIME%",
                            "request_id": "%REQ(X-REQUEST-ID)%",
                            "client": CLIENT_ID,
                            "method": "%REQ(:METHOD)%",
                            "path": "%REQ(:PATH)%",
                            "status": "%RESPONSE_CODE%",
                            "duration_ms": "%DURATION%",
                            "bytes_in": "%BYTES_RECEIVED%",
                            "bytes_out": "%BYTES_SENT%",
                        }
                    },
                },
            }
        ],
        "http_filters": [
            {
                "name": "envoy.filters.http.rbac",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {
                        "action": "ALLOW",
                        "policies": {
                            "api-key": {
                                "permissions": [{"any": True}],
                                "principals": [
                                    {
                                        "header": {
                                            "name": "authorization",
                                            "string_match": {"exact": f"Bearer {API_KEY}"},
                                        }
                                    }
                                ],
                            }
                        },
                    },
                },
            },
            {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                    "stat_prefix": "throttle",
                    "token_bucket": {
                        "max_tokens": UNBOUND_RATE,
                        "tokens_per_fill": UNBOUND_RATE,
                        "fill_interval": "1s",
                    },
                    "filter_enabled": {"runtime_key": "throttle_enabled", "default_value": pct100},
                    "filter_enforced": {"runtime_key": "throttle_enforced", "default_value": pct100},
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "app",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "app", "timeout": "10s"},
                            "request_headers_to_remove": ["authorization"],
                            "request_headers_to_add": [
                                {
                                    "header": {"key": "x-paymesh-client", "value": CLIENT_ID},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                }
                            ],
                        }
                    ],
                }
            ]
        },
    }
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "public",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "app",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "app",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": "127.0.0.1", "port_value": upstream_port}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }
    return json.dumps(config, indent=1) + "\n"


def post_body(n_bytes):
    """A charge-shaped JSON body padded to exactly `n_bytes`."""
    head = '{"amount":1000,"currency":"usd","source":"tok_visa","description":"'
    tail = '"}'
    return head + "x" * max(0, n_bytes - len(head) - len(tail)) + tail


def wrk_post_lua(body):
    """A wrk script that sends the payments write path: POST /v1/charges
    with an Idempotency-Key and a JSON body (built once, not per request)."""
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Idempotency-Key"] = "bench-idem-0001"\n'
    )
