"""The three proxies' configurations: the sidecar and Envoy written so that
they do the same work, haproxy as the floor (plain HTTP proxying).

The sidecar and Envoy get every feature on; haproxy does none of them:

| feature        | paymesh-sidecar                                   | Envoy                                                  | haproxy |
| -------------- | ------------------------------------------------- | ------------------------------------------------------ | ------- |
| authentication | `Authorization: Bearer` key, SHA-256, one map lookup of that digest in the client table; key removed, `x-paymesh-client` set | RBAC filter: exact match of the `authorization` header; key removed, `x-paymesh-client` added by the route | none (the header passes through) |
| throttling     | per-client GCRA bucket at 10M/s (never binds)     | `local_ratelimit` token bucket of 10M tokens per second (never binds), enabled and enforced for 100 % | none |
| access log     | one JSON line per request to a file               | file access log with a `json_format` of the same fields | none (no `log` line) |
| metrics        | Prometheus counters + latency histogram (admin `/metrics`) | Envoy's built-in stats and histograms (admin `/stats/prometheus`) | its built-in counters only (always on; no stats listener) |
| route choice   | sticky bucket per request (charge at 50 %)        | none (Envoy has no such feature; this is sidecar-only work) | none |
| upstream       | keep-alive pool                                   | keep-alive pool                                        | `mode http`, `http-reuse always`, keep-alive both sides |
| workers        | `workers: N`                                      | `--concurrency N`                                      | `nbthread N` |
| connection cap | `limits.max_connections` = the descriptor budget  | none                                                   | `maxconn` = the same budget |

Envoy's header check is a plain string compare where the sidecar hashes the
key, so the comparison slightly favours Envoy; haproxy does strictly less
than either, so "sidecar CPU per request ≤ haproxy's" asks every feature to
cost less than what the sidecar saves elsewhere.
"""

import hashlib
import json

# The API key the load generator sends; the sidecar knows only its hash.
API_KEY = "sk_bench_3f9a1c7e5b2d4068"
CLIENT_ID = "bench"
# A rate no benchmark reaches, so throttling costs its full bookkeeping
# but never answers 429.
UNBOUND_RATE = 10_000_000


def extra_clients_yaml(n):
    """`n` more client entries, each with its own key hash (`sk_bench_extra_I`),
    as the config of a sidecar in front of many clients; the load still
    uses API_KEY, which stays the first entry."""
    lines = []
    for i in range(n):
        digest = hashlib.sha256(f"sk_bench_extra_{i}".encode()).hexdigest()
        lines.append(f'  - {{ id: extra-{i}, api_key_sha256: "{digest}", '
                     f"rate: {{ per_second: {UNBOUND_RATE}, burst: {UNBOUND_RATE} }} }}\n")
    return "".join(lines)


def fd_budget(fd_limit):
    """The client connections `fd_limit` descriptors carry, by the sidecar's
    own rule (sidecar/src/connections.rs: half of what is left after 128
    reserved, as each client connection may hold an app connection)."""
    return max(1, (fd_limit - 128) // 2)


def sidecar_yaml(*, listen, app, admin, workers, work_dir, max_connections, clients=1):
    """The sidecar's config: every feature on, no etcd (migration from the
    config defaults) and no telemetry file (so nothing is ever shed).
    `clients` > 1 adds that many minus one other clients to its table."""
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    return f"""# Written by bench/harness: every feature on.
listen: "{listen}"
app: "{app}"
admin: "{admin}"
workers: {workers}
limits:
  # As many as the descriptor limit carries (the idle-connection and
  # many-connection runs need them all); nothing may be refused or shed.
  max_connections: {max_connections}
  max_inflight: {max_connections}
clients:
  - id: {CLIENT_ID}
    api_key_sha256: "{digest}"
    rate: {{ per_second: {UNBOUND_RATE}, burst: {UNBOUND_RATE} }}
{extra_clients_yaml(clients - 1)}migration:
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


def envoy_yaml(*, listen_port, upstream_port, admin_port, access_log, upstream_socket=None):
    """Envoy with the same features; JSON (a subset of YAML) so no YAML
    library is needed. With `upstream_socket`, the upstream is that Unix
    socket instead of the port."""
    if upstream_socket:
        upstream = {"pipe": {"path": upstream_socket}}
    else:
        upstream = {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}
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
                                        "endpoint": {"address": upstream}
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


HAPROXY_READY = "/haproxy-ready"


def haproxy_cfg(*, listen_port, upstream_port, threads, maxconn, upstream_socket=None):
    """haproxy as a plain HTTP proxy: keep-alive to the client and to the
    upstream (`http-reuse always`: any idle upstream connection serves any
    request), `nbthread` = the other proxies' workers, no logging, and a
    monitor URI for readiness that never reaches the upstream. With
    `upstream_socket`, the upstream is that Unix socket."""
    server = f"unix@{upstream_socket}" if upstream_socket else f"127.0.0.1:{upstream_port}"
    return f"""# Written by bench/harness: plain HTTP proxying, no logging.
global
    nbthread {threads}
    maxconn {maxconn}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 120s
    timeout server 10s
    timeout http-request 10s
    timeout http-keep-alive 120s

frontend public
    bind 127.0.0.1:{listen_port}
    maxconn {maxconn}
    monitor-uri {HAPROXY_READY}
    default_backend app

backend app
    server app {server}
"""


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
