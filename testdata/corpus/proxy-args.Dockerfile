FROM debian:bookworm-slim
ARG HTTP_PROXY
RUN echo "proxy is ${HTTP_PROXY:-unset}"
RUN apt-get update && apt-get install -y --no-install-recommends wget && rm -rf /var/lib/apt/lists/*
