# The ob-takeover worker and HTTP service. Build: docker build -t ob-takeover .
FROM python:3.11-slim

# ss (iproute2) is used on hosts, not here; the worker only needs Python and its packages.
RUN useradd --create-home --uid 1000 obtakeover
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY contracts ./contracts
COPY workflows ./workflows
COPY activities ./activities
COPY metadb ./metadb
COPY ob_takeover ./ob_takeover
COPY obsim ./obsim
RUN pip install --no-cache-dir . && mkdir -p /app/var && chown obtakeover /app/var
USER obtakeover
CMD ["python", "worker.py"]
