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
ENTRYPOINT ["/usr/local/bin/avscan"]
CMD ["run"]
