#!/usr/bin/env bash
# Make sure the system programs citynode needs are present.
#   scripts/system-deps.sh test   mosquitto and redis-server (the tests start their own), node (JS codec tests)
#   scripts/system-deps.sh demo   nothing is required: the demo embeds a Python broker when mosquitto is absent
# Missing packages are installed with apt-get when this runs as root (CI, containers) or with passwordless
# sudo; otherwise the script says what to install and fails.
set -euo pipefail
mode=${1:-test}
need=()
if [ "$mode" = test ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  command -v mosquitto_passwd >/dev/null 2>&1 || [ -x /usr/bin/mosquitto_passwd ] || need+=(mosquitto)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
fi
[ ${#need[@]} -eq 0 ] && exit 0
# shellcheck disable=SC2207
need=($(printf '%s\n' "${need[@]}" | sort -u))
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
  if [ "$sudo" != none ]; then
    echo "installing ${need[*]} with apt-get"
    # Debian's policy-rc.d may forbid starting the packaged service; the tests start their own broker.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || {
      $sudo apt-get update -q >/dev/null
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
    }
    exit 0
  fi
fi
echo "citynode needs: ${need[*]} (Debian/Ubuntu: sudo apt-get install ${need[*]})" >&2
exit 1
