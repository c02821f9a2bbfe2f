#!/usr/bin/env bash
# Installs what vision needs into this checkout's .local/ (idempotent; no root needed):
#  - ONNX Runtime: libonnxruntime.so from the `onnxruntime` wheel on PyPI (ort loads it at run
#    time; applianced finds .local/onnxruntime/ by itself in a development build);
#  - the default models: for each manifest in appliance/vision/models/, its file (and labels
#    file) into .local/models/<name>/ beside a copy of the manifest, sha256-checked. Files come
#    from ../shared/models/ (the verified copies, see shared/models.md) or, for those a registry
#    package ships unchanged, from that package.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
local_dir=.local
ort_dir=$local_dir/onnxruntime
models_dir=$local_dir/models
shared_models=../shared/models

arch=$(uname -m)
case "$arch" in
  x86_64 | aarch64) ;;
  *) echo "setup-vision: no onnxruntime wheel for $arch" >&2; exit 1 ;;
esac

if [ ! -e "$ort_dir/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "setup-vision: fetching onnxruntime $ORT_VERSION ($arch) from PyPI"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 311 --platform "manylinux_2_28_$arch" \
    "onnxruntime==$ORT_VERSION" -d "$tmp"
  mkdir -p "$ort_dir"
  python3 - "$tmp"/onnxruntime-*.whl "$ort_dir" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/libonnxruntime"):
            with z.open(name) as src, open(os.path.join(out, base), "wb") as dst:
                dst.write(src.read())
PY
fi
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$ort_dir/libonnxruntime.so"

# rapidocr-onnxruntime ships the PP-OCR models unchanged; fetched only when ../shared is absent.
rapidocr_wheel() {
  local dest=$local_dir/rapidocr
  if [ ! -d "$dest" ]; then
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps rapidocr-onnxruntime==1.4.4 -d "$tmp"
    mkdir -p "$dest"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      "$tmp"/rapidocr_onnxruntime-*.whl "$dest"
    rm -rf "$tmp"
  fi
  echo "$dest/rapidocr_onnxruntime/models"
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# install_file NAME FILE SHA256: puts FILE into .local/models/NAME/ unless it is there already.
install_file() {
  local name=$1 file=$2 sha=$3 dest=$models_dir/$1/$2
  if [ -f "$dest" ] && [ "$(sha_of "$dest")" = "$sha" ]; then
    return
  fi
  local source=""
  if [ -f "$shared_models/$file" ]; then
    source=$shared_models/$file
  elif [[ $file == ch_* ]]; then
    source=$(rapidocr_wheel)/$file
  fi
  if [ -z "$source" ] || [ ! -f "$source" ]; then
    echo "setup-vision: $file for model $name is not in $shared_models and no registry" \
      "package ships it unchanged; see shared/models.md for how it is made, and put it there" >&2
    exit 1
  fi
  if [ "$(sha_of "$source")" != "$sha" ]; then
    echo "setup-vision: $source has sha256 $(sha_of "$source"), the manifest says $sha" >&2
    exit 1
  fi
  mkdir -p "$models_dir/$name"
  cp "$source" "$dest.tmp"
  mv "$dest.tmp" "$dest"
}

# The manifests are TOML with one `key = "value"` per line for these keys.
value_of() { sed -n "s/^$2 = \"\(.*\)\"$/\1/p" "$1"; }

for manifest in appliance/vision/models/*.toml; do
  name=$(value_of "$manifest" name)
  install_file "$name" "$(value_of "$manifest" file)" "$(value_of "$manifest" sha256)"
  labels=$(value_of "$manifest" labels_file)
  if [ -n "$labels" ]; then
    install_file "$name" "$labels" "$(value_of "$manifest" labels_sha256)"
  fi
  cp "$manifest" "$models_dir/$name/manifest.toml"
done
echo "setup-vision: onnxruntime $ORT_VERSION in $ort_dir, models in $models_dir"
