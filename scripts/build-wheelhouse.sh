#!/usr/bin/env bash
# Build the release's wheelhouse: the enclave-hr wheel of this working tree and a
# wheel of everything it depends on (pinned by constraints.txt), so that a host
# installs with `pip install --no-index --find-links DIR enclave-hr==VERSION`
# (the appliance role with appliance_bundle_dir; the air-gapped bundle builds on it).
#
#   scripts/build-wheelhouse.sh OUT
#
# Dependencies are resolved by the interpreter the hosts run, Debian 12's
# /usr/bin/python3.11 (3.11.2; ENCLAVE_TARGET_PYTHON), in a builder venv, not by
# the project's venv: markers such as redis's `async-timeout; python_full_version
# < "3.11.3"` differ between the two. Hosts get wheels only: sdist-only
# dependencies (jieba) are built into pure-Python wheels here.
#
# The dependency wheels are cached in $ENCLAVE_CI_CACHE/wheels/<sha256 of
# pyproject.toml, constraints.txt and the target's version> (default
# /var/cache/enclave-ci): fetched once per change of either; the enclave-hr
# wheel is built fresh every time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ENCLAVE_CI_CACHE:-/var/cache/enclave-ci}
PY=${PYTHON:-$REPO/.venv/bin/python}
OUT=${1:?usage: $0 OUT}
TARGET_PYTHON=${ENCLAVE_TARGET_PYTHON:-/usr/bin/python3.11}

die() { echo "build-wheelhouse: $*" >&2; exit 1; }
[ -x "$PY" ] || die "$PY is missing (make install)"
[ -x "$TARGET_PYTHON" ] || die "$TARGET_PYTHON is missing (apt-get install python3.11 python3.11-venv)"
target_version=$("$TARGET_PYTHON" -c 'import platform; print(platform.python_version())')
builder=$CACHE/builder-$target_version
if [ ! -x "$builder/bin/pip" ]; then
    rm -rf "$builder"
    "$TARGET_PYTHON" -m venv "$builder" || die "could not make a venv with $TARGET_PYTHON (apt-get install python3.11-venv)"
fi

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
rm -f "$OUT"/*.whl

# Build from a copy of the working tree (tracked and new files, not ignored ones):
# an in-tree build would leave build/ and egg-info behind in the checkout.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and new files as they are now (a deleted tracked file is skipped).
    (cd "$REPO" && git ls-files -co --exclude-standard -z \
        | while IFS= read -r -d '' f; do [ ! -e "$f" ] || printf '%s\0' "$f"; done \
        | xargs -0 -r cp --parents -t "$src") || die "could not copy the working tree"
else  # an unpacked source tarball
    tar -C "$REPO" --exclude=./.venv --exclude=./build --exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
fi
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT" "$src" >/dev/null
app=$(ls "$OUT"/enclave_hr-*.whl)

key=$( (cat "$REPO/pyproject.toml" "$REPO/constraints.txt"; echo "$target_version") | sha256sum | cut -c1-16)
deps=$CACHE/wheels/$key
if [ ! -f "$deps/.complete" ]; then
    echo "build-wheelhouse: collecting dependency wheels for Python $target_version into $deps"
    rm -rf "$deps"
    mkdir -p "$deps"
    if ! "$builder/bin/pip" wheel --quiet --disable-pip-version-check -c "$REPO/constraints.txt" \
            -w "$deps" "$app" > "$deps.log" 2>&1; then
        grep -v "is ignored: it is neither a file nor a directory" "$deps.log" >&2 || true
        die "collecting the wheels failed (log: $deps.log)"
    fi
    rm -f "$deps"/enclave_hr-*.whl
    touch "$deps/.complete"
fi
# Sets of dependency wheels unused for two weeks go (each pyproject change makes one).
touch "$deps"
find "$CACHE/wheels" -mindepth 1 -maxdepth 1 -mtime +14 ! -name "$key*" -exec rm -rf {} +
# Hard links where the cache shares the file system, copies elsewhere.
for wheel in "$deps"/*.whl; do
    ln -f "$wheel" "$OUT/" 2>/dev/null || cp -f "$wheel" "$OUT/"
done
echo "build-wheelhouse: $(ls "$OUT"/*.whl | wc -l) wheels in $OUT ($(basename "$app"))"
