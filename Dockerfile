# syntax=docker/dockerfile:1
# fluxgate's image: one static-enough binary on distroless (glibc, CA certificates, no shell).
#   docker build -t ghcr.io/fluxgate/fluxgate:0.1.0 .
# The node tests (tests/e2e/node-run.sh) run the same image without a container engine:
# tests/image/build.sh puts the release binary at /fluxgate with the files this base provides
# (glibc and libgcc, CA certificates, the nonroot user) and takes USER, ENTRYPOINT, CMD and EXPOSE
# from this file, so the two cannot drift apart on how the container starts.

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
