ARG PYTHON=3.11
FROM python:${PYTHON}-bookworm AS wheels
WORKDIR /w
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels -r requirements.txt

FROM python:${PYTHON}-slim-bookworm
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/* && rm -rf /wheels
COPY app/ /app/
WORKDIR /app
ENTRYPOINT ["python", "-m", "app"]
