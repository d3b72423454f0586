#!/usr/bin/env bash
# `cmake --install` into a fresh prefix; the installed binary, run from another
# directory, finds its bundled default model under <prefix>/share/moerack.
set -euo pipefail
build_dir=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
cd /
out=$("$prefix/bin/moerack" generate --prompt "hello" --max-tokens 3 --ignore-eos --output-tokens 2>/dev/null)
[[ "$out" =~ ^[0-9]+,[0-9]+,[0-9]+$ ]] || { echo "unexpected output: $out"; exit 1; }
echo "installed binary ran: $out"
