FROM nginx:1.27
HEALTHCHECK NONE
HEALTHCHECK --interval=10s --timeout=2s --start-period=30s --start-interval=1s --retries=5 \
  CMD ["curl", "-fsS", "http://localhost/"]
STOPSIGNAL SIGQUIT
