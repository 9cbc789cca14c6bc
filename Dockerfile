# syntax=docker/dockerfile:1
#
# One image with all five paymesh binaries in /usr/local/bin, run as uid 65532.
# Each container of the pod picks its binary with `command:` (see
# charts/paymesh and k8s/base):
#
#   docker build -t paymesh/paymesh:dev .
#
# The runtime is debian-slim rather than distroless because the pod's `config`
# init container joins the sidecar YAML with /bin/sh and cat.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# protoc: etcd-client generates its gRPC code at build time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target dir is a cache mount, so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --workspace \
      --bin paymesh-sidecar --bin paymesh-app --bin paymesh-telemetryd \
      --bin paymesh-orchestrator --bin paymeshctl \
 && mkdir -p /out \
 && for bin in paymesh-sidecar paymesh-app paymesh-telemetryd paymesh-orchestrator paymeshctl; do \
      install -m 0755 "target/release/$bin" "/out/$bin"; \
    done

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: TLS to etcd, the orchestrator or Prometheus when their URLs are https.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 paymesh \
 && useradd --system --uid 65532 --gid paymesh --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin paymesh
COPY --from=builder /out/ /usr/local/bin/
USER 65532:65532
WORKDIR /
# 8080: the sidecar's public port; 9901: its admin port (health, metrics).
EXPOSE 8080 9901
LABEL org.opencontainers.image.title="paymesh" \
      org.opencontainers.image.description="paymesh sidecar, app, telemetry daemon, orchestrator and paymeshctl" \
      org.opencontainers.image.licenses="Apache-2.0"
CMD ["paymesh-sidecar", "--help"]
