FROM debian:bookworm-slim AS os
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
FROM os AS runtime-deps
RUN useradd -r app
FROM runtime-deps AS app
COPY app /usr/local/bin/app
USER app
CMD ["app"]
