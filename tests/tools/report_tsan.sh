#!/bin/sh
# sluice report's worker threads under ThreadSanitizer (make unit):
# --jobs 3 on a log of many chunks, plain and gzip'd, must report no race
# and give the same JSON, byte for byte, as --jobs 1 of the plain build.
# usage: report_tsan.sh TSAN_SLUICE SLUICE
set -eu
tsan=$1 plain=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# tests/data/report's logs 120 times over: ~3.7 MB, seven 512 KiB chunks
i=0
while [ $i -lt 120 ]; do
	cat tests/data/report/*.log
	i=$((i + 1))
done >"$dir/log"
gzip -c "$dir/log" >"$dir/log.gz"
TZ=UTC "$plain" report --jobs 1 --format json -o "$dir/want.json" "$dir/log"
for f in "$dir/log" "$dir/log.gz"; do
	TZ=UTC TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
		"$tsan" report --jobs 3 --format json -o "$dir/got.json" "$f"
	cmp "$dir/want.json" "$dir/got.json"
done
grep -q '"lines": [1-9][0-9][0-9][0-9][0-9]' "$dir/want.json"
echo "report_tsan: --jobs 3 under ThreadSanitizer: no race, same report"
