# The Parsec server image: `docker build -t parsec-django .`, then see docker-compose.yml.
#   docker run parsec-django migrate        (PARSEC_DB set)
#   docker run parsec-django run            (every option as a PARSEC_* variable, see deploy/*.env)
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
# The server's packages only: what follows the "# Tests" line is for the test suite.
RUN sed '/^# Tests/,$d' requirements.txt > requirements-runtime.txt \
    && python -m venv /venv \
    && /venv/bin/pip install -r requirements-runtime.txt
COPY . .
# Without settings: nothing of a deployment (secret key, data folder) is made inside the image.
RUN /venv/bin/django-admin compilemessages --ignore '.venv*' \
    && find . -name '*.po' -delete
# The web console's static files, compressed, into /app/staticfiles (served by the server, WhiteNoise).
# A throwaway key and the in-memory database: nothing of a deployment is made here.
RUN DJANGO_SECRET_KEY=collectstatic-only PARSEC_DB=MOCKED /venv/bin/python manage.py collectstatic --no-input

FROM python:3.11-slim-bookworm

ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PARSEC_HOST=0.0.0.0 \
    PARSEC_DATA_DIR=/data
# gid 1234: the group that deploy/make-ca.sh gives the TLS key.
RUN groupadd --gid 1234 parsec \
    && useradd --uid 1234 --gid parsec --home-dir /app --no-create-home --shell /usr/sbin/nologin parsec \
    && mkdir /data && chown parsec:parsec /data
COPY --from=build /venv /venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
USER parsec
EXPOSE 6777
VOLUME ["/data"]
ENTRYPOINT ["python", "manage.py"]
CMD ["run"]
