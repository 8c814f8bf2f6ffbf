package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"fhirdeid/anonymize/keys"
)

func init() {
	register(command{name: "keys", summary: "create a key file: the anonymizer's keys, stable from run to run", run: runKeys})
}

const keysUsage = `Usage:
  fhirdeid keys init FILE    write fresh random keys (cryptoHashKey, dateShiftKey,
                             encryptKey) to FILE, readable by its owner only; an
                             existing FILE is never overwritten

Use the file with "fhirdeid anonymize --keys FILE" or "anonymizer: {keysFile:
FILE}" in a pipeline: every run then pseudonymises ids and shifts dates the
same way, so tonight's data joins last night's. Keep it secret and apart from
the data: whoever holds it can recompute every pseudonym and date offset.
Losing it means starting a new lake.
`

func runKeys(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, keysUsage)
		return usageError{"missing subcommand: init"}
	}
	switch args[0] {
	case "init":
		fs := flag.NewFlagSet("keys init", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError{"keys init needs one FILE"}
		}
		path := fs.Arg(0)
		if _, err := keys.Create(path, nil, time.Now()); err != nil {
			return &exitError{code: 1, err: err}
		}
		fmt.Fprintf(e.stderr, "wrote new keys to %s (mode 0600): keep the file secret and backed up; losing it means starting a new lake\n", path)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, keysUsage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: use init", args[0])}
}
