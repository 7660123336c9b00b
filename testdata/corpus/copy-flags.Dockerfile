# syntax=docker/dockerfile:1.7-labs
FROM alpine AS src
RUN mkdir -p /data/a /data/b && touch /data/a/x /data/b/y

FROM alpine
COPY --link --from=src /data /data
COPY --chmod=0755 --chown=1000:1000 scripts/ /usr/local/bin/
COPY --parents ./cmd/*/main.go /src/
COPY --exclude=*.md --exclude=docs/ . /app/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/tool.tar.gz /opt/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.14.0 /buildkit
