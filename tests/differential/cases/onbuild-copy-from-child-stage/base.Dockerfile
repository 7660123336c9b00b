FROM busybox
ONBUILD COPY --from=builder /x /y
