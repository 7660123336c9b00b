FROM alpine
WORKDIR /usr
WORKDIR src
WORKDIR ../lib/app
RUN pwd
