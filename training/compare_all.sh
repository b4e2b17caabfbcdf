#!/usr/bin/env bash
# Architecture comparison for every task at one reduced CPU budget (64 px, <= 8 epochs, the first
# 2 of 5 grouped folds, random initialisation): compact CNN, ResNet50, VGG19. Then writes each
# table into the shipped model's card and report with `ctscan compare`.
# Usage: bash training/compare_all.sh [OUTPUT_DIR] [DATASETS_DIR] [MODELS_DIR]
set -euo pipefail
OUT="${1:-runs/arch}"
DATA="${2:-../shared/datasets}"
MODELS="${3:-models}"
TASKS=("chest_ct chest-ct-cancer" "head_ct head-ct-hemorrhage" "covid_xray covid-xray"
  "sarscov2_ct sarscov2-ct")

for task in "${TASKS[@]}"; do
  read -r dataset name <<< "$task"
  for arch in compact resnet50 vgg19; do
    ctscan train --data "$DATA/$dataset" --name "$name" --arch "$arch" --weights none \
      --image-size 64 --epochs 8 --folds 5 --max-folds 2 --batch-size 16 --learning-rate 1e-3 \
      --ship ensemble --output "$OUT/$arch" --runs-dir "$OUT-keras"
  done
done
for task in "${TASKS[@]}"; do
  read -r _ name <<< "$task"
  shipped="$(find "$MODELS/$name" -mindepth 1 -maxdepth 1 -type d | sort -V | tail -1)"
  ctscan compare --model-dir "$shipped" "$OUT"/{compact,resnet50,vgg19}/"$name"/1
done
