# check=skip=JSONArgsRecommended,AddLocalFile
FROM alpine
ADD file.txt /f
CMD echo skipped
LABEL maintainer me
