from alpine:3.20 as build
run echo lower
copy . /src
workdir /src
cmd ["true"]
