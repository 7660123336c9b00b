FROM alpine:3.20
RUN echo built > /artifact

FROM busybox
COPY --from=0 /artifact /artifact
COPY --from=nginx:1.27-alpine /etc/nginx/nginx.conf /etc/nginx.conf
RUN --mount=type=bind,from=alpine:3.20,source=/etc,target=/mnt/etc cat /mnt/etc/alpine-release
