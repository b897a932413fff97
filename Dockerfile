# followerwatch: multi-stage build; the runtime image holds a virtualenv and nothing else of ours.
#   docker build -t followerwatch .
#   docker run -v ./followerwatch.toml:/config/followerwatch.toml:ro -v fw-data:/data followerwatch
# Secrets never go into the image: mount them (e.g. /run/secrets/...) and name them with *_FILE.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/followerwatch
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/followerwatch/bin/pip install .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 followerwatch \
 && useradd --system --uid 10001 --gid followerwatch --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin followerwatch \
 && mkdir -p /config /data \
 && chown followerwatch:followerwatch /data
COPY --from=build /opt/followerwatch /opt/followerwatch
ENV PATH=/opt/followerwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FOLLOWERWATCH_CONFIG=/config/followerwatch.toml \
    FOLLOWERWATCH_SERVICE__DATA_DIR=/data \
    FOLLOWERWATCH_SERVICE__LOG_FORMAT=json \
    FOLLOWERWATCH_SERVICE__OPS_ADDRESS=0.0.0.0:9108
USER followerwatch:followerwatch
WORKDIR /data
VOLUME ["/config", "/data"]
EXPOSE 9108
# No curl in a slim image: the interpreter that is there does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status != 200)"]
# SIGTERM lets an in-flight poll finish its write (service.shutdown_timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["followerwatch"]
CMD ["run"]
