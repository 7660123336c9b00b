FROM busybox
# comment before a continued line
RUN echo one \
# a comment inside the continuation
    two \

    three
ENV A=1 \
    B=2 \
    C="three four"
LABEL org.opencontainers.image.title="odd" \
      org.opencontainers.image.description="continuations with blank lines"
RUN echo trailing \
