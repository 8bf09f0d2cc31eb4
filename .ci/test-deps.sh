#!/usr/bin/env bash
# The Debian packages the test suite needs beyond Python: the Java clients of the Handle/IDIS
# interop tests (the national ID-SDK and Handle.Net's hdllib, shared/idsdk and
# shared/handle-client), iproute2 for their network namespace, Chromium with CJK fonts for
# the scan page in a real browser (tests/test_scanpage_browser.py), redis-server for the shared
# cache tier (tests/test_cache_redis.py) and libcairo2 for rasterising the labels' SVGs
# (tests/test_labels.py). Under CI=true a test that cannot run fails instead of skipping.
#
# Checks files only (a few stat calls), so `make test` stays fast once everything is there.
# When something is missing: as root with apt-get, installs it (unless IDNODE_TEST_DEPS=check);
# otherwise exits 1 naming the exact apt-get command.
set -euo pipefail

J=/usr/share/java
# package | what proves it is installed (a command name or an absolute path)
NEEDS=(
  "default-jdk-headless|javac"
  "default-jdk-headless|java"
  "libbcprov-java|$J/bcprov.jar"
  "libbcpkix-java|$J/bcpkix.jar"
  "libgoogle-gson-java|$J/gson.jar"
  "libcommons-codec-java|$J/commons-codec.jar"
  "iproute2|ip"
  "chromium|${IDNODE_CHROMIUM:-/usr/bin/chromium}"
  "fonts-noto-cjk|/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
  "redis-server|redis-server"
  "libcairo2|lib:libcairo.so.2"
)

missing() {
  local want=() seen=" " pkg probe
  for entry in "${NEEDS[@]}"; do
    pkg=${entry%%|*}; probe=${entry#*|}
    if [[ $probe == /* ]]; then [[ -e $probe ]] && continue
    elif [[ $probe == lib:* ]]; then /sbin/ldconfig -p 2>/dev/null | grep -F "${probe#lib:} " >/dev/null && continue
    else command -v "$probe" >/dev/null 2>&1 && continue
    fi
    [[ $seen == *" $pkg "* ]] || { want+=("$pkg"); seen+="$pkg "; }
  done
  echo "${want[@]}"
}

read -r -a WANT <<<"$(missing)"
[[ ${#WANT[@]} -eq 0 ]] && exit 0

CMD="apt-get install -y --no-install-recommends ${WANT[*]}"
if [[ ${IDNODE_TEST_DEPS:-install} == check || $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "test dependencies missing: ${WANT[*]}" >&2
  echo "install them with:  apt-get update && $CMD" >&2
  exit 1
fi

echo "test-deps: installing ${WANT[*]} (IDNODE_TEST_DEPS=check to only check)" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists of a fresh machine may be missing or stale: refresh them first.
apt-get update -qq </dev/null >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends "${WANT[@]}" </dev/null >&2

read -r -a STILL <<<"$(missing)"
if [[ ${#STILL[@]} -ne 0 ]]; then
  echo "test dependencies still missing after apt-get install: ${STILL[*]}" >&2
  exit 1
fi
