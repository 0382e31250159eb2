#!/usr/bin/env bash
# Runs every check CI runs: formatting, vet and the tests (which compare
# against ../shared/testdata).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -d ../shared/testdata ]; then
	echo "../shared/testdata is missing: the tests compare against it (clone gemmac beside shared/)" >&2
	exit 1
fi
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -count=1 -timeout 20m ./...
