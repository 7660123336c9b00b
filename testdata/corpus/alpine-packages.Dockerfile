FROM alpine:3.20
RUN apk add --no-cache \
      bash \
      curl \
      openssl
RUN addgroup -S app && adduser -S app -G app
USER app
WORKDIR /home/app
CMD ["bash"]
