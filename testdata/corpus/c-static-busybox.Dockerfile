FROM gcc:14 AS build
WORKDIR /src
COPY hello.c .
RUN gcc -static -O2 -o hello hello.c && strip hello

FROM busybox:stable
COPY --from=build /src/hello /bin/hello
CMD ["/bin/hello"]
