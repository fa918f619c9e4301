# avscan: build in the Rust image, run on a slim Debian as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin avscan

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home avscan
COPY --from=build /src/target/release/avscan /usr/local/bin/avscan
USER avscan
# /healthz on OPS_ADDRESS (200 while the process and its pipeline are alive, also while it starts
# and drains), asked by avscan itself: the image has no curl. Kubernetes ignores it (the example
# has probes of its own); Docker and compose show it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/usr/local/bin/avscan", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/avscan"]
CMD ["run"]
