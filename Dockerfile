# One image for every component of deep-platform: each is a subcommand of `deep-platform`
# (run, activator, web, gpu-agent); the chart picks it with `args`.
# Build: docker build -t deep-platform .   Lint: hadolint Dockerfile (tests/chart/test_dockerfile.py)

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# wheels of the package and its dependencies; nothing of this stage reaches the final image
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="deep-platform" \
      org.opencontainers.image.description="The DEEP-Hybrid-DataCloud ML platform on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/deep_platform-*.whl \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin deep
# numeric, so that Pod Security's runAsNonRoot can verify it without reading /etc/passwd
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8080 9090 9400
ENTRYPOINT ["deep-platform"]
CMD ["run"]
