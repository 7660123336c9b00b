FROM python:3.12 AS build
ENV POETRY_VERSION=1.8.3 POETRY_VIRTUALENVS_IN_PROJECT=true
RUN pip install --no-cache-dir "poetry==$POETRY_VERSION"
WORKDIR /src
COPY pyproject.toml poetry.lock ./
RUN poetry install --only main --no-root
COPY . .
RUN poetry install --only main

FROM python:3.12-slim
WORKDIR /src
COPY --from=build /src /src
ENV PATH=/src/.venv/bin:$PATH
CMD ["uvicorn", "service.main:app", "--host", "0.0.0.0"]
