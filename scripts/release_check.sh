#!/usr/bin/env bash
# Before-release gate: build every sdist and wheel (each wheel built from its sdist, as
# PyPI users get it), check the namespace layout, then install each plugin wheel with core
# in a fresh venv and probe it from outside the checkout, and finally probe core alone.
#
#   scripts/release_check.sh          # from anywhere; exit 0 only if everything passed
#
# Env: PYTHON (interpreter for the venvs, default python3), UV (default uv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
UV="${UV:-uv}"
# uv's own root certificates reject this network's HTTPS proxy; the system bundle works.
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

rm -rf dist
# --no-sources: build as a user would, without [tool.uv.sources] workspace shortcuts.
"$UV" build --all-packages --no-sources -o dist
"$PYTHON" scripts/check_wheels.py dist

core_wheels=(dist/qtasks_core-*.whl)
if [[ ${#core_wheels[@]} -ne 1 || ! -f ${core_wheels[0]} ]]; then
    echo "release_check: expected exactly one qtasks-core wheel in dist/" >&2
    exit 1
fi
version="$(basename "${core_wheels[0]}" | cut -d- -f2)"

work="$(mktemp -d "${TMPDIR:-/tmp}/qtasks-release.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# install VENV REQ...: a fresh venv with REQs from dist/ only, then their third-party
# dependencies from the index. The first, offline step is what guarantees the local wheels
# are the ones installed, whatever PyPI holds under the same names; the second finds them
# already satisfied and only adds what they depend on.
install() {
    local venv="$1"
    shift
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --no-index --find-links dist --no-deps "$@"
    "$venv/bin/python" -m pip install -q --find-links dist "$@"
}

# Probe every wheel even when one fails, so a single run shows every problem.
failed=()
for wheel in dist/qtasks_*.whl; do
    dist_name="$(basename "$wheel" | cut -d- -f1)"    # qtasks_redis
    [[ $dist_name == qtasks_core ]] && continue
    leaf="${dist_name#qtasks_}"                        # check_wheels.py ensured qtasks/<leaf>/
    echo "== qtasks-$leaf $version with qtasks-core only"
    install "$work/$leaf" "qtasks-core==$version" "qtasks-$leaf==$version"
    "$work/$leaf/bin/python" -I scripts/probe_installed.py "$leaf" || failed+=("qtasks-$leaf")
done

echo "== qtasks-core $version alone"
install "$work/core-only" "qtasks-core==$version"
"$work/core-only/bin/python" -I scripts/probe_core_only.py || failed+=("qtasks-core alone")

if ((${#failed[@]})); then
    echo "release_check: FAILED probes: ${failed[*]}" >&2
    exit 1
fi
echo "release_check: OK (qtasks $version)"
