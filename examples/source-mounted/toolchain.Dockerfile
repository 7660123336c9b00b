# The toolchain image, `golang:local` (there is no Docker Hub here). Same
# first instructions as the other Go examples: kiln builds it from cache.
FROM debian:bookworm
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io golang-go ca-certificates && rm -rf /var/lib/apt/lists/*
ENV CGO_ENABLED=0 GOCACHE=/tmp/go-cache
WORKDIR /src
