#!/usr/bin/env bash
# Reproduce the shipped models: one `ctscan train` per task, 5-fold grouped cross-validation;
# the shipped graph is the ensemble of the 5 fold models with mirror test-time augmentation.
# Usage: bash training/train_all.sh [OUTPUT_DIR] [DATASETS_DIR]
set -euo pipefail
OUT="${1:-runs/store}"
DATA="${2:-../shared/datasets}"
COMMON=(--arch compact --weights none --folds 5 --ship ensemble --output "$OUT")

ctscan train --data "$DATA/head_ct" --name head-ct-hemorrhage --image-size 160 --epochs 60 "${COMMON[@]}"
ctscan train --data "$DATA/chest_ct" --name chest-ct-cancer --image-size 128 --epochs 90 --patience 12 "${COMMON[@]}"
ctscan train --data "$DATA/covid_xray" --name covid-xray --image-size 128 --epochs 60 "${COMMON[@]}"
ctscan train --data "$DATA/sarscov2_ct" --name sarscov2-ct --image-size 128 --epochs 60 --patience 12 "${COMMON[@]}"
