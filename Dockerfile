FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bgqueue ./bgqueue
COPY tasks ./tasks
COPY config ./config
RUN pip install --no-cache-dir .
ENV BGQUEUE_HOME=/var/lib/bgqueue
RUN useradd --system --home /var/lib/bgqueue --create-home bgqueue
USER bgqueue
