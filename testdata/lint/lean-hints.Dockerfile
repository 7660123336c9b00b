FROM debian:bookworm AS base
RUN apt-get update
RUN apt-get install -y curl
RUN pip install flask
RUN apk add git
ADD config.yaml /etc/app/
ADD https://example.com/x.tar.gz /opt/
ADD vendor.tar.gz /opt/
CMD ['bad', 'json']
FROM golang:1.22
COPY --from=base /etc/app /etc/app
