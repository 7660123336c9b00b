# syntax=docker/dockerfile:1-labs
FROM alpine
RUN --network=none echo offline
RUN --network=host wget -q -O /dev/null http://127.0.0.1:5000/v2/ || true
RUN --security=sandbox echo sandboxed
