# syntax=docker/dockerfile:1

# Build stage: the same `cargo build --release --locked` that CI proves, with the toolchain CI
# uses (deploy/check.sh fails when this, Cargo.toml's rust-version and CI's rustc disagree).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own, so that a code change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/relay_load.rs \
 && cargo build --release --locked \
 && rm -rf src benches

COPY src ./src
COPY config ./config
COPY benches ./benches
# Make sure cargo sees the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked

# The spool's directory, owned by the runtime user (the runtime image has no shell to make it).
RUN mkdir -p /spool-dir/spool

# Runtime stage: no shell, no package manager, not root.
FROM gcr.io/distroless/cc-debian12:nonroot
# The configuration baked in; `--build-arg CONFIG_FILE=config/my-relay.toml` picks another.
ARG CONFIG_FILE=config/default.toml
COPY --from=build /src/target/release/topic-relay /usr/local/bin/topic-relay
COPY ${CONFIG_FILE} /etc/topic-relay/config.toml
# 65532 is distroless's `nonroot`; numeric, so Kubernetes can check runAsNonRoot.
COPY --from=build --chown=65532:65532 /spool-dir /var/lib/topic-relay

# Mount your own file over /etc/topic-relay/config.toml, or point TOPIC_RELAY_CONFIG elsewhere.
# Events answered 202 live in the spool until they are delivered: keep it on a volume.
ENV TOPIC_RELAY_CONFIG=/etc/topic-relay/config.toml \
    TOPIC_RELAY_LOG_FORMAT=json \
    TOPIC_RELAY__SERVER__LISTEN=0.0.0.0:8080 \
    TOPIC_RELAY__DELIVERY__SPOOL_DIR=/var/lib/topic-relay/spool
VOLUME ["/var/lib/topic-relay"]
EXPOSE 8080
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/topic-relay", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/topic-relay"]
CMD ["serve"]
