# Shared settings for the shell scripts: where the repository, the Kafka jars
# and the venv live. Sourced, never executed; sets ROOT if the caller has not.
# shellcheck shell=bash

: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# Kafka broker version fetched by scripts/bootstrap and run by scripts/stack.
KAFKA_VERSION=${INTERESTD_KAFKA_VERSION:-4.1.1}
LOG4J_VERSION=2.24.3
KAFKA_LIBS="$ROOT/.cache/kafka/$KAFKA_VERSION/libs"
VENV_PYTHON="$ROOT/.cache/venv/bin/python"
