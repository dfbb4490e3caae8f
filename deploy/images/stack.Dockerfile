# herd-stack: Apache ZooKeeper, Kafka and Cassandra for the compose stack,
# one image, one server per container (`command: [zk1]`, `[kafka]`,
# `[cassandra]`). It runs deploy/local/stack, the script that runs the native
# stack for development and every integration test: the same versions, jars
# (from Maven Central), JVM flags and server configuration; containers only
# set where servers listen (HERD_STACK_BIND, HERD_STACK_HOST, HERD_ZK_PEERS,
# HERD_KAFKA_EXTERNAL; `deploy/local/stack help` lists all settings).
# openssl: a secure stack (deploy/docker-compose.secure.yml) makes its
# certificates with it and checks ZooKeeper's TLS port with it; the secrets
# volume is mounted at /var/lib/herd-secrets (owned by the servers' user).
# Build context: the repository root.

FROM debian:bookworm-slim AS fetch
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven ca-certificates-java \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/local/stack /opt/herd/deploy/local/stack
COPY deploy/local/probe/ /opt/herd/deploy/local/probe/
# Fetches the three servers and compiles the health probes.
RUN HERD_CACHE_DIR=/opt/herd/cache /opt/herd/deploy/local/stack install \
 && rm -rf /root/.m2 /opt/herd/cache/dist/*/mvn.log

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps openssl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 999 --user-group --home-dir /var/lib/herd-stack herd \
 && mkdir -p /var/lib/herd-stack /var/lib/herd-secrets \
 && chown herd:herd /var/lib/herd-stack /var/lib/herd-secrets
COPY --from=fetch /opt/herd /opt/herd
ENV HERD_CACHE_DIR=/opt/herd/cache \
    HERD_STACK_DIR=/var/lib/herd-stack \
    HERD_STACK_BIND=0.0.0.0
USER herd
VOLUME /var/lib/herd-stack
ENTRYPOINT ["/opt/herd/deploy/local/stack", "serve"]
