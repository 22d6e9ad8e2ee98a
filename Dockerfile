# One image for every service: `reactivation serve gateway|identity|risk|provisioning|timers|webhooks|carrier-sim`,
# `reactivation migrate`, `reactivation agent create ...`.

FROM rust:1-bookworm AS builder
WORKDIR /src
# Compile against the checked-in query metadata; no database at build time.
ENV SQLX_OFFLINE=true
COPY . .
RUN cargo build --release --locked -p reactivation

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin reactivation
COPY --from=builder /src/target/release/reactivation /usr/local/bin/reactivation
USER reactivation
EXPOSE 8080 8090
ENTRYPOINT ["reactivation"]
