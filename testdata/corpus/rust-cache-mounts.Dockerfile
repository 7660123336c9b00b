# syntax=docker/dockerfile:1.7
FROM rust:1.79-slim AS build
WORKDIR /src
RUN --mount=type=bind,source=src,target=src \
    --mount=type=bind,source=Cargo.toml,target=Cargo.toml \
    --mount=type=bind,source=Cargo.lock,target=Cargo.lock \
    --mount=type=cache,target=/src/target,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/registry,id=cargo-registry \
    cargo build --locked --release && cp target/release/app /app

FROM gcr.io/distroless/cc-debian12
COPY --from=build /app /app
ENTRYPOINT ["/app"]
