# Debian's Python 3.11 with a venv first on PATH: what docker/Dockerfile needs
# of python:3.11-slim-bookworm (`python`, `pip`), built with no registry
# (scripts/container-base.sh). The host's CA bundle is trusted, for pip.
FROM debian:bookworm
COPY host-ca-bundle.crt /usr/local/share/ca-certificates/host-ca-bundle.crt
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && update-ca-certificates >/dev/null \
    && python3 -m venv /usr/local/python \
    && /usr/local/python/bin/pip install --quiet --no-cache-dir --upgrade pip
ENV PATH=/usr/local/python/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    LANG=C.UTF-8
