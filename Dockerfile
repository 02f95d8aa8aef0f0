# Images for docker-compose.yml: the sidecar, the mock provider, and Envoy with the filter.
FROM rust:1-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip1
COPY . .
RUN cargo build --release --target wasm32-wasip1 -p spendfuse-filter \
 && cargo build --release -p spendfuse-sidecar -p spendfuse-tests --bins

FROM debian:bookworm-slim AS sidecar
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/spendfuse
COPY --from=build /src/target/release/spendfuse-sidecar /usr/local/bin/
COPY config ./config
USER nobody
ENTRYPOINT ["spendfuse-sidecar"]

FROM debian:bookworm-slim AS mock-provider
COPY --from=build /src/target/release/mock-provider /usr/local/bin/
USER nobody
ENTRYPOINT ["mock-provider"]

FROM envoyproxy/envoy:v1.40-latest AS envoy
WORKDIR /srv/spendfuse
COPY --from=build /src/target/wasm32-wasip1/release/spendfuse_filter.wasm \
  ./target/wasm32-wasip1/release/spendfuse_filter.wasm
COPY envoy/envoy.yaml /etc/envoy/envoy.yaml
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
