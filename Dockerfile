# gethookd: the webhook reliability gateway in a container.
#
#   docker build -t gethookd .
#   docker run -p 8080:8080 --stop-timeout 90 \
#     -e DATABASE_URL=postgresql://... -e ENCRYPTION_KEY=$(docker run --rm gethookd keygen) gethookd
#
# Without DATABASE_URL it runs an embedded PostgreSQL in the /var/lib/gethookd volume
# (a single-container trial setup). `docker stop` sends SIGTERM: a graceful drain of up to
# DRAIN_TIMEOUT (60s by default), so give it a longer stop timeout than Docker's default 10s.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A dedicated unprivileged user. /run/gethookd is its private (0700) XDG runtime directory,
# where the embedded PostgreSQL keeps its lock file.
# Fixed ids (10001), so that Kubernetes' runAsNonRoot can check the numeric USER below.
RUN groupadd --system --gid 10001 gethookd \
    && useradd --system --uid 10001 --gid gethookd --home-dir /var/lib/gethookd --no-create-home \
        --shell /usr/sbin/nologin gethookd \
    && install -d -o gethookd -g gethookd -m 0700 /var/lib/gethookd /run/gethookd

# Only what `pip install .` needs (setup.cfg reads README.md as the long description).
WORKDIR /tmp/gethookd-src
COPY pyproject.toml setup.cfg README.md ./
COPY gethookd ./gethookd
COPY migrations ./migrations
RUN pip install . \
    && cd / \
    && rm -rf /tmp/gethookd-src

WORKDIR /var/lib/gethookd
ENV GETHOOKD_DATA_DIR=/var/lib/gethookd \
    XDG_RUNTIME_DIR=/run/gethookd \
    HOST=0.0.0.0 \
    PORT=8080
VOLUME ["/var/lib/gethookd"]

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM

# Liveness of the API process (no database access); slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]

ENTRYPOINT ["gethookd"]
CMD ["run"]
