FROM alpine AS a
RUN echo a > /a
FROM alpine AS b
RUN echo b > /b
FROM alpine AS c
RUN echo c > /c
FROM alpine AS unused
RUN echo never built
FROM alpine AS final
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=c /c /c
