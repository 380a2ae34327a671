#!/bin/sh
# Writes the man page and the completion scripts into build/extras, from
# the binary's own kong model, for the release archives and the .deb.
set -eu
out=build/extras
rm -rf "$out"
mkdir -p "$out"
bin="$out/moonfrp-bulk-host"
CGO_ENABLED=0 go build -o "$bin" .
"$bin" man | gzip -9n >"$out/moonfrp-bulk.1.gz"
for shell in bash zsh fish; do
    "$bin" completion "$shell" --bin /usr/bin/moonfrp-bulk >"$out/moonfrp-bulk.$shell"
done
rm -f "$bin"
