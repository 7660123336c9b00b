# syntax=docker/dockerfile:1
# check=skip=JSONArgsRecommended

# A leading comment block, then instructions.
FROM alpine:3.20
  # an indented comment
RUN echo "# not a comment inside a command"
CMD echo shell form allowed by the check directive
