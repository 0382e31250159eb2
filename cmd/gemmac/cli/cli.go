// Package cli holds gemmac's subcommands. The gemmac command and every binary
// that `gemmac build` produces run them, so both speak the same flags.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/gemmac/gemmac/frontend"
	"github.com/gemmac/gemmac/runtime/model"
)

// Command is one subcommand.
type Command struct {
	Name    string
	Usage   string // the argument synopsis
	Summary string
	Run     func(env *Env, args []string) error
}

// Env is where a command reads and writes, so tests can run commands in
// process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Program is the binary's name in messages ("gemmac", or a built BIN).
	Program string
	// Engine makes the compiled engine: the linked kernels in a built
	// binary; nil in gemmac, which compiles the checkpoint on the fly.
	Engine func(*frontend.Checkpoint, model.Options) (model.Engine, error)
	// Context is the context a built binary was compiled for; 0 in gemmac.
	Context int
	// Convert is how a built binary's weights were converted at build time
	// (zero: not at all). The interpreter (--interp, bench --compare)
	// converts the checkpoint the same way, so both engines run the same
	// weights.
	Convert frontend.Conversion
}

// StdEnv is the process's own standard streams.
func StdEnv(program string) *Env {
	return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Program: program}
}

// errUsage marks errors that are the user's invocation, printed with usage.
var errUsage = errors.New("usage")

// usageError reports a bad invocation of a command.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// Main runs the command named by args[0] and returns the process exit code.
func Main(env *Env, commands []Command, args []string) int {
	byName := map[string]Command{}
	for _, c := range commands {
		byName[c.Name] = c
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(env, commands)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := byName[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "%s: unknown command %q\n", env.Program, args[0])
		printUsage(env, commands)
		return 2
	}
	err := cmd.Run(env, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "%s %s: %v\nusage: %s %s %s\n", env.Program, cmd.Name, strings.TrimPrefix(err.Error(), "usage: "), env.Program, cmd.Name, cmd.Usage)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "%s %s: %v\n", env.Program, cmd.Name, err)
		return 1
	}
}

func printUsage(env *Env, commands []Command) {
	sorted := append([]Command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	fmt.Fprintf(env.Stderr, "usage: %s <command> [flags]\n\ncommands:\n", env.Program)
	for _, c := range sorted {
		fmt.Fprintf(env.Stderr, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintf(env.Stderr, "\nRun '%s <command> --help' for a command's flags.\n", env.Program)
}

// newFlags makes a command's flag set; parse errors come back as usage errors.
func newFlags(env *Env, name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	return fs
}

// parse parses args and rejects stray positional arguments.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError("%v", err)
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// required checks that string flags were given.
func required(fs *pflag.FlagSet, names ...string) error {
	for _, n := range names {
		if !fs.Changed(n) {
			return usageError("--%s is required", n)
		}
	}
	return nil
}

// Commands are gemmac's subcommands. Built binaries use ModelCommands.
func Commands() []Command {
	return append([]Command{
		genRandomCommand(),
		buildCommand(),
		tokenizeCommand(),
		templateCommand(),
		inspectCommand(),
	}, ModelCommands()...)
}

// ModelCommands run a model: the subcommands a built binary carries too.
func ModelCommands() []Command {
	return []Command{
		runCommand(),
		chatCommand(),
		logitsCommand(),
		evalCommand(),
		benchCommand(),
		serveCommand(),
	}
}
