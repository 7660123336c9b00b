FROM python:3.12-alpine
RUN <<EOT
#!/usr/bin/env python3
print("running as a script")
EOT
