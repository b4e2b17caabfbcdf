#!/usr/bin/env bash
# Reproduce the shipped models. For each task: a compact backbone pretrained on the other three
# datasets (the task's own images left out by content), then one `ctscan train` from it with
# 5-fold grouped cross-validation; the shipped graph is the ensemble of the fold models (two
# per fold for head CT, from two seeds) with mirror test-time augmentation; chest CT and chest
# X-ray images are cropped to the body first (--crop-foreground), chest CT also trains on random
# display curves (gamma) with lighter contrast and brightness changes; SARS-CoV-2 CT slices are
# cropped, then padded to a square (--keep-aspect) instead of squeezed, and train with lighter
# augmentation. No ImageNet weights anywhere. Each fold stops on the fold it is scored on (the
# shipped ensembles use every image); add --inner-validation 0.2 to COMMON for honest, nested
# cross-validated scores of the same recipes (README, "Honest (nested) cross-validation"), and
# `ctscan nested --model-dir models/NAME/VERSION RUN` writes such a run into the shipped card.
# Last, every new version gets its applicability check (`ctscan applicability`: statistics
# fitted fold by fold, threshold on out-of-fold scores, evaluation on the other datasets).
# Usage: bash training/train_all.sh [OUTPUT_DIR] [DATASETS_DIR]
set -euo pipefail
shopt -s nullglob
OUT="${1:-runs/store}"
DATA="${2:-../shared/datasets}"
COMMON=(--arch compact --folds 5 --ship ensemble --output "$OUT")
DATASETS=(chest_ct head_ct covid_xray sarscov2_ct)

# backbone_for TARGET: pretrain on every dataset but TARGET; prints the weights file.
backbone_for() {
  local target="$1" sources=() dataset
  for dataset in "${DATASETS[@]}"; do
    [[ "$dataset" == "$target" ]] || sources+=(--data "$DATA/$dataset")
  done
  local weights="$OUT/backbones/for-$target.weights.h5"
  ctscan pretrain "${sources[@]}" --exclude "$DATA/$target" --output "$weights" \
    --image-size 128 --epochs 40 >&2
  echo "$weights"
}

ctscan train --data "$DATA/chest_ct" --name chest-ct-cancer --weights "$(backbone_for chest_ct)" \
  --crop-foreground --augment gamma=0.3,contrast=0.1,brightness=0.05 \
  --image-size 128 --epochs 120 --patience 12 "${COMMON[@]}"
ctscan train --data "$DATA/head_ct" --name head-ct-hemorrhage --weights "$(backbone_for head_ct)" \
  --image-size 160 --epochs 60 --members-per-fold 2 "${COMMON[@]}"
ctscan train --data "$DATA/covid_xray" --name covid-xray --weights "$(backbone_for covid_xray)" \
  --crop-foreground --image-size 128 --epochs 60 "${COMMON[@]}"
ctscan train --data "$DATA/sarscov2_ct" --name sarscov2-ct \
  --weights "$(backbone_for sarscov2_ct)" --crop-foreground --keep-aspect \
  --augment contrast=0.05,brightness=0.02,zoom=0.05,translation=0.02 \
  --image-size 128 --epochs 80 --patience 12 "${COMMON[@]}"

for version in "$OUT"/*/[0-9]*/; do
  [[ -f "$version/applicability.npz" ]] || ctscan applicability --model-dir "$version" --datasets "$DATA"
done
