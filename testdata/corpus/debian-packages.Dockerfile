FROM debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update && \
    apt-get install -y --no-install-recommends \
        curl \
        ca-certificates \
        # tools used by the entrypoint
        jq \
        tini \
    && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /usr/local/bin/
ENTRYPOINT ["tini", "--", "entrypoint.sh"]
