#!/usr/bin/env bash
# Prints one variable of a cluster's env file: pg-env.sh DIR NAME
set -euo pipefail
# shellcheck disable=SC1091
source "${1:?usage: pg-env.sh DIR NAME}/env"
printf '%s\n' "${!2}"
