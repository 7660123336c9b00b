FROM alpine
CMD ['single', 'quotes', 'are', 'not', 'json']
ENTRYPOINT [ "sh", "-c", "echo $0" ]
RUN ["echo", "exec form"]
