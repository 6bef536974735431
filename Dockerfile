# syntax=docker/dockerfile:1
# fluxgate's image: one static-enough binary on distroless (glibc, CA certificates, no shell).
#   docker build -t ghcr.io/fluxgate/fluxgate:0.1.0 .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build directory between builds (BuildKit); the binary is
# copied out because the target/ cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin fluxgate \
    && install -D -m 0755 target/release/fluxgate /out/fluxgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/fluxgate /fluxgate
# The nonroot user of distroless, numerically so runAsNonRoot can verify it.
USER 65532:65532
# 8443: admission webhook (HTTPS); 8080: /metrics, /healthz, /readyz.
EXPOSE 8443 8080
ENTRYPOINT ["/fluxgate"]
CMD ["serve"]
