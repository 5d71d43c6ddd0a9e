#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/console/): Playwright drives it through
# executable_path=/usr/bin/chromium, since `playwright install` cannot download a browser on
# these machines. Installs the `chromium` package with apt-get when /usr/bin/chromium is
# missing, and a Chinese font (`fonts-wqy-microhei`) when none is installed, so the
# console's Chinese pages render (and their screenshots, docs/console/). Needs root (or
# sudo); does nothing when both are there. scripts/test.sh runs it in CI.
set -euo pipefail

packages=()
[[ -x /usr/bin/chromium ]] || packages+=(chromium)
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
    packages+=(fonts-wqy-microhei)
fi
((${#packages[@]})) || exit 0

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if [[ ! -x /usr/bin/chromium ]]; then
    echo "install-browser.sh: apt-get ran but /usr/bin/chromium is missing" >&2
    exit 1
fi
echo "install-browser.sh: installed ${packages[*]} ($(/usr/bin/chromium --version 2>/dev/null | tail -n 1))"
