FROM busybox:latest
ONBUILD RUN echo triggered > /triggered
ONBUILD COPY app.txt /app/
ONBUILD ENV TRIGGERED=yes
ONBUILD LABEL from.onbuild=yes
RUN echo base > /base
