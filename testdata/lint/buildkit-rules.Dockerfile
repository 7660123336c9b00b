ARG BASE_TAG=3.20
FROM alpine:${BASE_TAGG} as Builder
MAINTAINER someone
ENV API_TOKEN=abc
run echo lower
WORKDIR app
COPY $UNDEFINED_SRC /dst
CMD echo one
CMD ["two"]
FROM alpine AS builder
ENTRYPOINT ["x"]
