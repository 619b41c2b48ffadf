# One image for the binaries of the identity service.
#   docker build -t identity-service .
#   docker run --rm identity-service api migrate
#   docker run ... identity-service              # api (the default command)
#   docker run ... identity-service projector
#   docker run ... identity-service worker
#   docker run ... identity-service relay        # when the api runs with RELAY_ENABLED=false
# Configuration comes from the environment only (see .env.example); the image
# holds no secrets.

# --- build ----------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependencies first: with only the manifests and empty crates, this layer is
# rebuilt only when Cargo.toml or Cargo.lock change. A new workspace member
# needs its own line here and in the two loops below.
COPY Cargo.toml Cargo.lock ./
COPY domain/Cargo.toml domain/
COPY bus/Cargo.toml bus/
COPY infra/Cargo.toml infra/
COPY app/Cargo.toml app/
COPY relay/Cargo.toml relay/
COPY api/Cargo.toml api/
COPY projector/Cargo.toml projector/
COPY worker/Cargo.toml worker/
COPY bench/Cargo.toml bench/
RUN for crate in domain bus infra app relay api projector worker bench; do \
        mkdir -p "$crate/src" && : >"$crate/src/lib.rs"; \
    done \
    && for bin in api relay projector worker bench; do echo 'fn main() {}' >"$bin/src/main.rs"; done \
    && cargo build --release --locked --bin api --bin relay --bin projector --bin worker \
    && rm -rf domain/src bus/src infra/src app/src relay/src api/src projector/src worker/src bench/src

# The real sources. COPY keeps the files' old modification times, so touch them
# to make cargo rebuild the workspace crates over the placeholders.
COPY . .
RUN find domain bus infra app relay api projector worker bench migrations -type f -exec touch {} + \
    && cargo build --release --locked --bin api --bin relay --bin projector --bin worker \
    && install -D -m 0755 -t /out target/release/api target/release/relay \
        target/release/projector target/release/worker

# --- runtime --------------------------------------------------------------------
FROM debian:bookworm-slim

# curl is for health checks (docker compose, orchestrators).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 identity \
    && useradd --system --uid 10001 --gid identity --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin identity \
    && mkdir -p /keys /audit-keys \
    && chown identity:identity /keys /audit-keys && chmod 700 /keys /audit-keys

COPY --from=builder /out/api /out/relay /out/projector /out/worker /usr/local/bin/

# Listen on all interfaces inside the container; log JSON lines.
ENV API_ADDR=0.0.0.0:8080 \
    PROJECTOR_ADDR=0.0.0.0:8081 \
    WORKER_ADDR=0.0.0.0:8082 \
    RELAY_ADDR=0.0.0.0:8083 \
    JWT_SIGNING_KEY_FILE=/keys/jwt-signing.pem \
    AUDIT_SIGNING_KEY_FILE=/audit-keys/audit-signing.pem \
    LOG_FORMAT=json

USER 10001:10001
EXPOSE 8080 8081 8082 8083
CMD ["api"]
