#!/usr/bin/env bash
set -euo pipefail
exec results/report_generator --entries="$1" --results_dir=results --check="$2"
