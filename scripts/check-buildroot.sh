#!/usr/bin/env bash
# Lint of the Buildroot external tree (buildroot/), runnable without Buildroot or the network:
#  - every package has Config.in, <name>.mk and <name>.hash and is sourced from Config.in;
#  - every symbol a defconfig sets, or our Config.in files select or depend on, is defined in
#    our Config.in files or listed in buildroot/upstream-symbols.txt (the symbols of the pinned
#    Buildroot we use; scripts/image.sh checks that list against a real Buildroot tree), and
#    that list names nothing unused;
#  - every path a defconfig names inside the external tree exists;
#  - appliance-models.hash pins exactly the files and sha256 of the models' manifests, and the
#    notices file it lists;
#  - shellcheck passes on every shell script in scripts/, buildroot/ and rootfs-overlay/;
#  - each board's genimage.cfg, run by genimage on dummy inputs, gives a GPT disk image with
#    partitions rootfs-a and rootfs-b of equal size and a blank data partition (the first boot
#    formats it: rootfs-overlay/usr/lib/appliance/firstboot-data.sh leaves any content alone).
#
#   scripts/check-buildroot.sh [REPO_DIR]
#
# REPO_DIR defaults to this checkout. Each problem is printed on its own line; the exit status
# is 1 if there was any.
set -euo pipefail
# One collation for sort, comm and the committed upstream-symbols.txt.
export LC_ALL=C

repo=$(readlink -f "${1:-$(dirname "$0")/..}")
br=$repo/buildroot
problems=0

problem() {
  echo "check-buildroot: $*" >&2
  problems=$((problems + 1))
}

for tool in shellcheck genimage mksquashfs sfdisk mkfs.vfat mcopy python3; do
  command -v "$tool" >/dev/null ||
    { echo "check-buildroot: $tool is not installed (just setup installs it)" >&2 && exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- Packages -----------------------------------------------------------------------------

packages=0
for dir in "$br"/package/*/; do
  name=$(basename "$dir")
  packages=$((packages + 1))
  for file in Config.in "$name.mk" "$name.hash"; do
    [ -f "$dir/$file" ] || problem "package/$name: $file is missing"
  done
  grep -Fqx "source \"\$BR2_EXTERNAL_APPLIANCE_PATH/package/$name/Config.in\"" "$br/Config.in" ||
    problem "package/$name: not sourced from buildroot/Config.in"
done
while read -r sourced; do
  [ -f "$br/$sourced" ] || problem "Config.in sources $sourced, which does not exist"
done < <(grep -oE '^source "[^"]+"' "$br/Config.in" | cut -d'"' -f2 | cut -d/ -f2-)

# --- Symbols ------------------------------------------------------------------------------

# Symbols our Config.in files define, and the upstream ones they refer to.
cat "$br/Config.in" "$br"/package/*/Config.in 2>/dev/null >"$work/kconfig"
sed -nE 's/^[[:space:]]*(menu)?config[[:space:]]+(BR2_[A-Za-z0-9_]+).*/\2/p' "$work/kconfig" |
  sort -u >"$work/ours"
# (Strings are left out: a default value may name $(BR2_EXTERNAL_APPLIANCE_PATH).)
{ grep -E '^[[:space:]]*(select|depends on|imply|default)[[:space:]]' "$work/kconfig" || true; } |
  sed -e 's/#.*//' -e 's/"[^"]*"//g' | { grep -oE 'BR2_[A-Za-z0-9_]+' || true; } |
  sort -u | comm -23 - "$work/ours" >"$work/kconfig-upstream"

upstream_list=$br/upstream-symbols.txt
grep -Ev '^[[:space:]]*(#|$)' "$upstream_list" >"$work/upstream-raw" || true
sort -u "$work/upstream-raw" >"$work/upstream"
cmp -s "$work/upstream-raw" "$work/upstream" ||
  problem "upstream-symbols.txt: not sorted, or has duplicate lines (sort -u it)"

while read -r symbol; do
  grep -Fqx "$symbol" "$work/upstream" ||
    problem "package Config.in files refer to $symbol, which is neither ours nor in upstream-symbols.txt"
done <"$work/kconfig-upstream"

defconfigs=0
: >"$work/used"
for defconfig in "$br"/configs/*_defconfig; do
  name=configs/$(basename "$defconfig")
  defconfigs=$((defconfigs + 1))
  sed -nE 's/^(BR2_[A-Za-z0-9_]+)=.*/\1/p; s/^# (BR2_[A-Za-z0-9_]+) is not set$/\1/p' "$defconfig" >"$work/set"
  while read -r symbol; do
    problem "$name: $symbol is set more than once"
  done < <(sort "$work/set" | uniq -d)
  sort -u "$work/set" >>"$work/used"
  while read -r symbol; do
    grep -Fqx "$symbol" "$work/ours" || grep -Fqx "$symbol" "$work/upstream" ||
      problem "$name: $symbol is neither defined in buildroot's Config.in files nor listed in upstream-symbols.txt"
  done < <(sort -u "$work/set")

  # Paths inside the external tree: every word of a value that starts with the tree's path
  # (the make expression $(BR2_EXTERNAL_APPLIANCE_PATH), which ends at the first ")").
  while read -r path; do
    [ -e "$br/${path#*)/}" ] || problem "$name: $path does not exist"
  done < <(grep -oE '\$\(BR2_EXTERNAL_APPLIANCE_PATH\)[^" ]*' "$defconfig" | sort -u || true)
done
cat "$work/kconfig-upstream" >>"$work/used"
sort -u "$work/used" | comm -13 - "$work/upstream" >"$work/unused"
while read -r symbol; do
  problem "upstream-symbols.txt: $symbol is used by no defconfig or Config.in (remove it)"
done <"$work/unused"

# --- Model hashes -------------------------------------------------------------------------

# value_of MANIFEST KEY: the manifests have one `key = "value"` line per key used here.
value_of() { sed -n "s/^$2 = \"\(.*\)\"$/\1/p" "$1"; }
models_hash=$br/package/appliance-models/appliance-models.hash
models_dir=$repo/appliance/vision/models
: >"$work/expected-models"
for manifest in "$models_dir"/*.toml; do
  model=$(value_of "$manifest" name)
  [ "$model" = "$(basename "$manifest" .toml)" ] ||
    problem "$(basename "$manifest"): name \"$model\" differs from the file name"
  echo "$(value_of "$manifest" sha256)  $model/$(value_of "$manifest" file)" >>"$work/expected-models"
  labels=$(value_of "$manifest" labels_file)
  [ -z "$labels" ] ||
    echo "$(value_of "$manifest" labels_sha256)  $model/$labels" >>"$work/expected-models"
done
if [ -f "$models_hash" ]; then
  sed -nE 's|^sha256 +([0-9a-f]{64}) +([^/ ]+/[^ ]+)$|\1  \2|p' "$models_hash" | sort >"$work/pinned-models"
  sort "$work/expected-models" | diff "$work/pinned-models" - >"$work/models-diff" || true
  grep '^[<>]' "$work/models-diff" >"$work/models-diff-lines" || true
  while read -r side hash file; do
    if [ "$side" = "<" ]; then
      problem "appliance-models.hash pins $file as $hash, which no manifest says"
    else
      problem "appliance-models.hash lacks $file with sha256 $hash (from its manifest)"
    fi
  done <"$work/models-diff-lines"
  notices_hash=$(sed -nE 's/^sha256 +([0-9a-f]{64}) +THIRD-PARTY-NOTICES\.md$/\1/p' "$models_hash")
  [ "$notices_hash" = "$(sha256sum "$models_dir/THIRD-PARTY-NOTICES.md" | cut -d' ' -f1)" ] ||
    problem "appliance-models.hash: THIRD-PARTY-NOTICES.md's sha256 is not the file's"
fi

# --- Shell scripts ------------------------------------------------------------------------

scripts=()
while IFS= read -r -d '' file; do
  case $file in
    *.sh) scripts+=("$file") ;;
    *) head -n1 "$file" | grep -Eq '^#!.*/(env )?(ba)?sh( |$)' && scripts+=("$file") ;;
  esac
done < <(find "$repo/scripts" "$br" "$repo/rootfs-overlay" -path "$br/output" -prune -o -type f -print0)
for script in "${scripts[@]}"; do
  shellcheck "$script" >"$work/shellcheck" 2>&1 ||
    problem "shellcheck fails on ${script#"$repo"/}:$(printf '\n%s' "$(cat "$work/shellcheck")")"
done

# --- Disk image layouts -------------------------------------------------------------------

boards=0
while IFS= read -r -d '' cfg; do
  board=${cfg#"$br"/board/}
  board=${board%/genimage.cfg}
  boards=$((boards + 1))
  run=$work/genimage/$board
  mkdir -p "$run/input" "$run/root" "$run/fs/boot"
  # Inputs: the images and files the configuration reads but does not make itself, as dummies
  # (a real squashfs for the root slots, random bytes for bootloader blobs and boot scripts).
  grep -oE '^image +[^ ]+' "$cfg" | awk '{ print $2 }' | sort -u >"$run/made"
  { grep -oE 'image *= *"[^"]+"' "$cfg" | sed -E 's/.*"(.*)"/\1/'
    grep -E 'files *= *\{' "$cfg" | grep -oE '"[^"]+"' | tr -d '"'
  } | sort -u | comm -23 - "$run/made" >"$run/inputs"
  echo "dummy kernel" >"$run/fs/boot/Image"
  while read -r input; do
    case $input in
      *.squashfs) mksquashfs "$run/fs" "$run/input/$input" -quiet -noappend -comp zstd >/dev/null ;;
      *) head -c 65536 /dev/urandom >"$run/input/$input" ;;
    esac
  done <"$run/inputs"
  if ! genimage --config "$cfg" --rootpath "$run/root" --tmppath "$run/tmp" \
    --inputpath "$run/input" --outputpath "$run/output" >"$run/log" 2>&1; then
    problem "board/$board/genimage.cfg: genimage failed:$(printf '\n%s' "$(tail -n 5 "$run/log")")"
    continue
  fi
  # The disk images: what a `partition` block writes into, i.e. the hdimage images.
  disks=$(awk '/^image /{ name = $2 } /hdimage/{ print name }' "$cfg")
  [ -n "$disks" ] || problem "board/$board/genimage.cfg: no hdimage (disk image)"
  for disk in $disks; do
    if ! sfdisk --json "$run/output/$disk" >"$run/table.json" 2>"$run/log"; then
      problem "board/$board: sfdisk cannot read the partition table of $disk: $(cat "$run/log")"
      continue
    fi
    python3 - "$run/table.json" "$board/$disk" >"$run/layout-problems" <<'PY'
import json, sys
table = json.load(open(sys.argv[1]))["partitiontable"]
where = sys.argv[2]
if table.get("label") != "gpt":
    print(f"{where}: partition table is {table.get('label')}, not gpt")
parts = {}
for part in table.get("partitions", []):
    parts.setdefault(part.get("name"), []).append(part)
for name in ("rootfs-a", "rootfs-b", "data"):
    if len(parts.get(name, [])) != 1:
        print(f"{where}: {len(parts.get(name, []))} partitions labelled {name}, not 1")
if len(parts.get("rootfs-a", [])) == 1 and len(parts.get("rootfs-b", [])) == 1:
    a, b = parts["rootfs-a"][0]["size"], parts["rootfs-b"][0]["size"]
    if a != b:
        print(f"{where}: rootfs-a and rootfs-b differ in size ({a} and {b} sectors)")
PY
    while read -r layout_problem; do problem "$layout_problem"; done <"$run/layout-problems"
  done
  # The data partition ships blank: with a file system in it, the first boot would neither grow
  # nor format it.
  if awk '/partition data *\{/{ p = 1 } p && /image *=/{ found = 1 } p && /\}/{ exit }
    END { exit !found }' "$cfg"; then
    problem "board/$board/genimage.cfg: the data partition has an image; it must ship blank"
  fi
done < <(find "$br/board" -name genimage.cfg -print0 | sort -z)

if [ "$problems" -gt 0 ]; then
  echo "check-buildroot: $problems problem(s)" >&2
  exit 1
fi
echo "check-buildroot: ok ($packages packages, $defconfigs defconfigs, ${#scripts[@]} shell scripts, $boards disk layouts)"
