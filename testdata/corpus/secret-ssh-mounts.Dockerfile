# syntax=docker/dockerfile:1
FROM alpine:3.20
RUN apk add --no-cache git openssh-client
RUN --mount=type=ssh git clone git@github.com:example/private.git /src
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required=true cat /root/.npmrc >/dev/null
RUN --mount=type=secret,id=token,env=API_TOKEN sh -c 'test -n "$API_TOKEN"'
RUN --mount=type=tmpfs,target=/tmp,size=64m ls /tmp
