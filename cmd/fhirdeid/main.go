// Command fhirdeid exports FHIR data in bulk, de-identifies it and writes it to
// blob storage. Run "fhirdeid help" for the list of subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=..."; left
// "dev", it is read from the build information (version.go).
var Version = "dev"

// command is one subcommand. Each lives in its own file and registers itself
// from an init function, so adding one never touches this file.
type command struct {
	name    string
	summary string
	// run executes the command with the arguments that follow its name.
	// It returns an error to print, or an *exitError to choose the exit code.
	run func(ctx context.Context, env *env, args []string) error
}

// env carries the process's standard streams and environment to a command,
// so commands can be tested without touching the real process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("fhirdeid: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// exitError carries an exit code chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks an error in the command line; it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run dispatches args to a subcommand and maps its error to an exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		writeVersion(e.stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "fhirdeid: unknown command %q (run \"fhirdeid help\")\n", args[0])
		return 2
	}
	err := c.run(ctx, e, args[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "fhirdeid %s: %s\n", c.name, ue.msg)
		return 2
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(e.stderr, "fhirdeid %s: %v\n", c.name, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(e.stderr, "fhirdeid %s: %v\n", c.name, err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "fhirdeid: export FHIR data in bulk, de-identify it, and land it in blob storage.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: fhirdeid <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "  version      print the version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run \"fhirdeid <command> -h\" for a command's flags.")
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments ("fhirdeid anonymize FILE -o DIR"), and returns the
// positional arguments in order. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// userAgent is the User-Agent fhirdeid sends to FHIR servers.
func userAgent() string { return "fhirdeid/" + Version }
