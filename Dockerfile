# The worker image: used by docker-compose.yml for the worker, beat and bucket-init services.
# Python 3.13, the newest the project supports (3.11 and 3.12 are tested too). No moto: the
# embedded S3 is the `demo` extra, never needed against real S3.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 notify
WORKDIR /app

COPY requirements.txt .
RUN pip install --disable-pip-version-check -r requirements.txt

COPY pyproject.toml README.md celeryconfig.py ./
COPY storage ./storage
COPY worker ./worker
COPY tasks ./tasks
COPY client ./client
# The web app's client package too: the CLI's enqueue and the in-repo client build on it.
RUN pip install --disable-pip-version-check --no-deps . ./client

USER notify
ENTRYPOINT ["notify-worker"]
CMD ["worker"]
