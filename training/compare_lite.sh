#!/usr/bin/env bash
# EfficientNet-Lite0 against the shipped compact recipes (docs/models.md, "ImageNet transfer
# learning"): for each task, nested cross-validation (--inner-validation 0.2) from the packaged
# ImageNet weights at 128, 160 and 224 px, and from a cross-task backbone (`ctscan pretrain
# --arch efficientnet-lite0` on the other three datasets, the task's images left out); then the
# shipped protocol (no inner validation) at one size. Each task keeps its shipped preprocessing.
# Every run is a version folder under OUTPUT_DIR; `ctscan compare --model-dir models/NAME/V RUN
# ... --carry-from models/NAME/V` puts them into a card's comparison table. Offline; about four
# hours on a 2-core CPU (SARS-CoV-2 CT is most of it).
# Usage: bash training/compare_lite.sh [OUTPUT_DIR] [DATASETS_DIR]
set -euo pipefail
OUT="${1:-runs/lite}"
DATA="${2:-../shared/datasets}"
DATASETS=(chest_ct head_ct covid_xray sarscov2_ct)
LITE=(--arch efficientnet-lite0 --fine-tune-layers 60 --fine-tune-epochs 15
  --fine-tune-learning-rate 1e-4 --epochs 30 --folds 5 --ship ensemble --runs-dir "$OUT/runs")
# name, dataset, nested sizes, cross-task size, shipped-protocol size, preprocessing flags
TASKS=(
  "chest-ct-cancer chest_ct 224,160 224 224 --crop-foreground --augment gamma=0.3,contrast=0.1,brightness=0.05"
  "head-ct-hemorrhage head_ct 224,160,128 128 128"
  "covid-xray covid_xray 224,160,128 128 128 --crop-foreground"
  "sarscov2-ct sarscov2_ct 160 - 160 --crop-foreground --keep-aspect --augment contrast=0.05,brightness=0.02,zoom=0.05,translation=0.02"
)

# backbone_for TARGET SIZE: a Lite0 backbone from ImageNet, trained on every dataset but TARGET.
backbone_for() {
  local target="$1" size="$2" sources=() dataset
  for dataset in "${DATASETS[@]}"; do
    [[ "$dataset" == "$target" ]] || sources+=(--data "$DATA/$dataset")
  done
  local weights="$OUT/backbones/lite0-$size-for-$target.weights.h5"
  ctscan pretrain --arch efficientnet-lite0 "${sources[@]}" --exclude "$DATA/$target" \
    --output "$weights" --image-size "$size" --epochs 30 >&2
  echo "$weights"
}

for task in "${TASKS[@]}"; do
  read -r name dataset sizes cross shipped flags <<< "$task"
  read -r -a preprocessing <<< "${flags:-}"
  common=(--data "$DATA/$dataset" --name "$name" "${preprocessing[@]}" "${LITE[@]}")
  for size in ${sizes//,/ }; do
    ctscan train "${common[@]}" --weights imagenet --image-size "$size" \
      --inner-validation 0.2 --output "$OUT/store"
  done
  if [[ "$cross" != "-" ]]; then
    ctscan train "${common[@]}" --weights "$(backbone_for "$dataset" "$cross")" \
      --image-size "$cross" --inner-validation 0.2 --output "$OUT/store"
  fi
  ctscan train "${common[@]}" --weights imagenet --image-size "$shipped" --output "$OUT/shipped"
done
