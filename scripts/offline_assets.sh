#!/usr/bin/env bash
# MathJax served from the build itself, so the book typesets its maths without internet (a laptop,
# a train). npm's `mathjax` package (version 3) is unpacked into _static/mathjax once; where npm
# cannot fetch it, a two-line loader that asks the CDN stands in, and the build says so.
set -euo pipefail
cd "$(dirname "$0")/.."
target=_static/mathjax
version=3.2.2
[ -f "$target/.version-$version" ] && exit 0
rm -rf "$target" && mkdir -p "$target"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if command -v npm >/dev/null 2>&1 && (cd "$tmp" && npm pack --silent "mathjax@$version" >/dev/null 2>&1); then
  tar -xzf "$tmp/mathjax-$version.tgz" -C "$tmp"
  es5="$tmp/package/es5"  # only what tex-chtml.js loads: itself, its fonts, TeX extensions, the menu
  cp "$es5/tex-chtml.js" "$target/"
  mkdir -p "$target/output/chtml" "$target/input/tex"
  cp -r "$es5/output/chtml/fonts" "$target/output/chtml/"
  cp -r "$es5/input/tex/extensions" "$target/input/tex/"
  cp -r "$es5/ui" "$es5/a11y" "$target/"
  touch "$target/.version-$version"
  echo "book: MathJax $version installed in $target (offline maths)"
else
  echo "book: npm could not fetch mathjax@$version: the built book will load MathJax from the internet" >&2
  cat >"$target/tex-chtml.js" <<'JS'
// Fallback written by scripts/offline_assets.sh: no offline MathJax could be installed.
(function () { var s = document.createElement("script"); s.async = true;
  s.src = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"; document.head.appendChild(s); })();
JS
fi
