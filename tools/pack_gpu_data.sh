#!/usr/bin/env bash
# Pack the training corpus subset a lent GPU machine gets (it cannot see ../shared; the working tree that travels
# is limited to 64 MiB): all of train_images and train_mvs, every third frame of train_rgbd, KITTI 06 frames 0-2
# (the CUDA whole-model test and the benchmark pair). Output: a `shared/data/...` tree as .tar.xz (~51 MB).
#
#   tools/pack_gpu_data.sh [SHARED_DIR] [OUT.tar.xz]     (defaults: ../shared, .gpudata/data.tar.xz)
#   then: echo /.gpudata/ >> .git/info/exclude, and carry .gpudata with the device command
set -euo pipefail
SHARED=${1:-../shared}
OUT=${2:-.gpudata/data.tar.xz}
src="$SHARED/data"
[ -d "$src/train_images" ] || { echo "no $src/train_images: pass the shared folder" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dst="$tmp/shared/data"
mkdir -p "$dst/kitti06_seq/image_0"
cp -r "$src/train_images" "$src/train_mvs" "$dst/"
cp "$src"/kitti06_seq/image_0/00000{0,1,2}.png "$dst/kitti06_seq/image_0/"
mkdir -p "$dst/train_rgbd"
cp "$src"/train_rgbd/README.md "$src"/train_rgbd/verify_rgbd.py "$dst/train_rgbd/" 2>/dev/null || true
for scene in "$src"/train_rgbd/*/; do
  name=$(basename "$scene")
  out="$dst/train_rgbd/$name"
  mkdir -p "$out"
  for f in "$scene"*.txt; do [ "$(basename "$f")" = frames.txt ] || cp "$f" "$out/"; done
  awk 'NR % 3 == 1' "$scene/frames.txt" >"$out/frames.txt"
  awk '{print $1; print $2}' "$out/frames.txt" | while read -r f; do
    mkdir -p "$out/$(dirname "$f")"
    cp "$scene/$f" "$out/$f"
  done
done
mkdir -p "$(dirname "$OUT")"
tar cf - -C "$tmp" shared | xz -T0 -3 >"$OUT"
echo "wrote $OUT ($(du -h "$OUT" | cut -f1))"
