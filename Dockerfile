# The packyard server image (packyard[server]): `packyard serve` on 0.0.0.0:8000, catalog under /data.
# compose.yaml runs it against MinIO; alone it runs the embedded local backend.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git: git sync (sync/) drives the git command line through gitpython.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

# The source is only needed to build and install the distribution; drop it afterwards so
# the server runs the installed package, never the checkout.
COPY . /src
RUN cd /src \
    && pip install --no-cache-dir '.[server]' \
    && cd / \
    && rm -rf /src

# A fixed non-root uid, so a bind-mounted /data can be chowned to it on the host.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/packyard packyard \
    && mkdir -p /data \
    && chown packyard:packyard /data

# Chowned before VOLUME: a new named volume copies this ownership from the image.
VOLUME ["/data"]
WORKDIR /data
USER packyard

ENV PACKYARD_DATA=/data \
    PACKYARD_HOST=0.0.0.0 \
    PACKYARD_PORT=8000

EXPOSE 8000

# No curl in slim: python's urllib; any non-2xx or connection error raises, exit 1.
# /healthz also checks the blob backend (the S3 bucket), not just the process.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PACKYARD_PORT', '8000') + '/healthz', timeout=4)"]

CMD ["packyard", "serve"]
