# herd's binaries in one image: herd-worker, herd-coordinator, herdctl,
# herd-loadgen. Each compose service picks its binary with `command:`.
#
# Two ways to fill it, one runtime stage:
#   default target: compiles the workspace from source (context: the
#     repository root); this is what `docker compose up --build` does.
#       docker build -f deploy/images/herd.Dockerfile -t herd:local .
#   --target prebuilt: packages binaries already built on a Debian bookworm
#     host (context: a directory holding bin/herd-*); deploy/compose-test
#     uses it so that CI does not compile the workspace a second time.
#       docker build -f deploy/images/herd.Dockerfile --target prebuilt -t herd:local DIR

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
USER nobody
CMD ["herdctl", "--help"]

FROM runtime AS prebuilt
COPY bin/ /usr/local/bin/

FROM rust:1.95-bookworm AS build
# librdkafka is built from source by rdkafka-sys: cmake, a C/C++ toolchain, curl headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ make libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herd-worker -p herd-coordinator -p herdctl -p herd-loadgen \
 && mkdir -p /out \
 && cp target/release/herd-worker target/release/herd-coordinator target/release/herdctl target/release/herd-loadgen /out/

FROM runtime AS source
COPY --from=build /out/ /usr/local/bin/
