#!/usr/bin/env bash
# Screenshot built pages the way an offline reader sees them: scripts/screenshot.sh PAGE.html OUT.png [HEIGHT]
set -euo pipefail
page=$(realpath "$1"); out=$2; height=${3:-2400}
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
  --virtual-time-budget=8000 --window-size=1280,"$height" --screenshot="$out" "file://$page" 2>/dev/null
rm -rf "$profile"
echo "$out"
