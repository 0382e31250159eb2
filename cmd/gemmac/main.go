// Command gemmac compiles Gemma-2 checkpoints and runs them.
package main

import (
	"os"

	"github.com/gemmac/gemmac/cmd/gemmac/cli"
)

func main() {
	os.Exit(cli.Main(cli.StdEnv("gemmac"), cli.Commands(), os.Args[1:]))
}
