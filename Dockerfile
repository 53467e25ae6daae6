# ticketclf batch image. The build stages make a venv on the same base as the runtime, which
# copies only that venv (the dependencies, then ticketclf installed non-editable) and the model.
# Every stage runs `python3` from PATH, so any Debian-like Python base works: python:3.13-slim
# (/usr/local/bin/python3) or the local debootstrap base the tests pass (/usr/bin/python3).
ARG BASE=python:3.13-slim

# The runtime dependencies alone, read from pyproject.toml. The next stage copies the file by
# content, so an edit elsewhere in pyproject.toml (dev tools, version) keeps the cached venv.
FROM ${BASE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >requirements.txt

# The dependencies in a venv. pip compiles their .pyc files here: the runtime's root filesystem
# is read-only. Their test suites are dead weight at run time, and so are the symbol tables of
# their extension modules (~24 MB; strip comes from binutils, installed in this build stage
# only). The libraries auditwheel vendored (`*.libs/`) keep theirs: stripping those patched
# ELF files breaks them (NumPy's OpenBLAS no longer loads). The imports check the result.
FROM ${BASE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=requirements /src/requirements.txt /tmp/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
    && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +
# binutils is a tool of this build stage only: no version of it reaches the image.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils \
       >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && find /opt/venv/lib -type f -name '*.so*' -path '*/site-packages/*' ! -path '*.libs/*' \
       -exec strip --strip-unneeded {} + \
    && /opt/venv/bin/python -c "import numpy, numpy.linalg, scipy.sparse, scipy.optimize, \
       scipy.special, sklearn.svm, sklearn.ensemble, sklearn.linear_model, pandas, pycld2, \
       pydantic_core, jiter, diskcache, google.genai, openai, skops.io; \
       numpy.linalg.svd(numpy.ones((3, 3)))"

# ticketclf itself, installed into that venv; its files are staged apart in /pkg (same layout)
# so that a code change makes one small layer in the image, not a new copy of the whole venv.
FROM deps AS package
COPY pyproject.toml /src/
COPY ticketclf/ /src/ticketclf/
WORKDIR /opt/venv
RUN bin/pip install --no-cache-dir --no-deps /src \
    && mkdir /pkg \
    && cp -a --parents bin/ticketclf lib/python3*/site-packages/ticketclf* /pkg/

# The dependencies without pip and setuptools: nothing installs anything at run time.
FROM deps AS venv
RUN /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE}
LABEL org.opencontainers.image.title="ticketclf" \
      org.opencontainers.image.description="Batch classifier for telecom support tickets" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed non-root UID/GID, matching runAsUser/fsGroup in deploy/k8s.
RUN groupadd --gid 10001 ticketclf \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ticketclf \
    && install -d -o 10001 -g 10001 -m 0700 /var/cache/ticketclf \
    && install -d -o 10001 -g 10001 -m 0755 /data
COPY --from=venv /opt/venv /opt/venv
COPY --from=package /pkg/ /opt/venv/
COPY models/default/ /app/models/default/
# The package is not beside models/ here, so the default model is found through the env.
# The cache and temp files go to mounts (emptyDir, PVC, tmpfs): the root fs can be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    TICKETCLF_MODEL=/app/models/default \
    TICKETCLF_CACHE_DIR=/var/cache/ticketclf \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=5m --timeout=60s --start-period=30s --retries=1 CMD ["ticketclf", "doctor"]
# ticketclf is PID 1 and installs its own SIGTERM handler: a stop exits 143 with no partial output.
ENTRYPOINT ["ticketclf"]
CMD ["--help"]
