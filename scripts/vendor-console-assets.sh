#!/usr/bin/env bash
# The console's browser libraries, from npm at pinned versions, into
# services/console/static/vendor/ (committed: the console serves them itself, never from a
# CDN, and a deployment needs no npm). Run again after changing a version here.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART_JS=chart.js@4.5.1          # the overview's charts (MIT)
HTMX=htmx.org@2.0.8              # partial updates without a build step (0BSD)
HTMX_SSE=htmx-ext-sse@2.2.4      # htmx's server-sent events extension (0BSD)

target=services/console/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for package in "$CHART_JS" "$HTMX" "$HTMX_SSE"; do
  # npm pack checks each tarball against the registry's integrity hash.
  (cd "$work" && npm pack --silent "$package" >/dev/null)
done
mkdir -p "$target"
for tarball in "$work"/*.tgz; do
  name=$(basename "$tarball" .tgz)
  mkdir -p "$work/$name" && tar xzf "$tarball" -C "$work/$name"
done
cp "$work"/chart.js-*/package/dist/chart.umd.min.js "$target/chart.umd.min.js"
cp "$work"/chart.js-*/package/LICENSE.md "$target/chart.js.LICENSE.md"
cp "$work"/htmx.org-*/package/dist/htmx.min.js "$target/htmx.min.js"
cp "$work"/htmx.org-*/package/LICENSE "$target/htmx.LICENSE"
cp "$work"/htmx-ext-sse-*/package/dist/sse.min.js "$target/htmx-sse.min.js"
cp "$work"/htmx-ext-sse-*/package/LICENSE "$target/htmx-sse.LICENSE"
printf '%s\n' "$CHART_JS" "$HTMX" "$HTMX_SSE" > "$target/VERSIONS"
