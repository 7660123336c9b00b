FROM alpine
RUN <<FILE1 cat > /file1 && <<FILE2 cat > /file2
I am
first
FILE1
I am
second
FILE2
COPY <<one.txt <<two.txt /dest/
1
one.txt
2
two.txt
