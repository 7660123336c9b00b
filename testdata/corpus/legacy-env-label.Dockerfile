FROM ubuntu:22.04
MAINTAINER Someone <someone@example.com>
ENV APP_HOME /opt/app
ENV JAVA_OPTS -Xmx512m -Xms256m
LABEL version 1.0
WORKDIR $APP_HOME
CMD java $JAVA_OPTS -jar app.jar
