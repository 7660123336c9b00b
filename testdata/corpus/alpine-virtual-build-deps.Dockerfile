FROM alpine:3.20
RUN set -eux; \
    apk add --no-cache --virtual .build-deps gcc musl-dev make; \
    make -C /usr/src/tool install; \
    apk del .build-deps
