FROM golang:1.22 AS base
WORKDIR /src
COPY go.* ./
RUN go mod download

FROM base AS test
COPY . .
RUN go test ./...

FROM base AS build
COPY . .
RUN go build -o /out/tool ./cmd/tool

FROM alpine:3.20 AS release
RUN apk add --no-cache ca-certificates tzdata
COPY --from=build /out/tool /usr/local/bin/tool
CMD ["tool", "--help"]
