#!/usr/bin/env bash
# Installs what gemmac needs on a fresh Debian machine: Go modules through the
# module proxy, and LLVM 14's opt and llc for the compiled path.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "gemmac needs Go 1.26 or newer (https://go.dev/dl/); /usr/local/go/bin is not on PATH" >&2
	exit 1
fi
if ! command -v opt-14 >/dev/null 2>&1 || ! command -v llc-14 >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing LLVM 14 (opt, llc) from Debian's packages..." >&2
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq llvm-14 >/dev/null
	else
		echo "note: LLVM 14 is missing; install it with: sudo apt-get install -y llvm-14" >&2
	fi
fi
go mod download
