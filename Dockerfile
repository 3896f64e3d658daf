# authplane container image: build a release binary with the Rust toolchain, then run it as a
# non-root user on debian:bookworm-slim with the demo config. Mount your own config over
# /etc/authplane/authplane.toml and set AUTHPLANE_ISSUER for anything but a demo.
#   docker build -t authplane .
#   docker run --rm -p 8080:8080 authplane

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY src/ src/
COPY migrations/ migrations/
COPY config/ config/
# tests/ and benches/ are not needed for the binary (targets declared with an explicit `path` are
# not looked for by `cargo build`). Copy here any directory the sources embed at compile time.
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 authplane \
    && useradd --system --uid 10001 --gid authplane --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin authplane
COPY --from=build /src/target/release/authplane /usr/local/bin/authplane
COPY --from=build /src/config/authplane.toml /etc/authplane/authplane.toml
USER authplane
ENV AUTHPLANE_CONFIG=/etc/authplane/authplane.toml AUTHPLANE_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["authplane"]
CMD ["serve"]
