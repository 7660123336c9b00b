FROM nginx:alpine
ARG GREETING=hello
COPY <<EOF /usr/share/nginx/html/index.html
<h1>${GREETING} from a heredoc</h1>
EOF
COPY <<'CONF' /etc/nginx/conf.d/extra.conf
location /health { return 200 "ok $host"; }
CONF
