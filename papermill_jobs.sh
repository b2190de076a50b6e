#!/usr/bin/env bash
# Named batch jobs of papermill runs, defined in jobs.yaml (see nbs/05a_jobs.ipynb).
#   ./papermill_jobs.sh --list
#   ./papermill_jobs.sh <job> [--dry-run] [--force] [--only NAME...] [--runs-dir DIR] [--kernel NAME]
# Records go to runs/<job>/<name>/<UTC stamp>.ipynb (+ .log). Set PYTHON to pick the interpreter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" -m mmnb.jobs --jobs-file "$here/jobs.yaml" "$@"
