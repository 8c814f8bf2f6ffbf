package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"fhirdeid/anonymize"
	"fhirdeid/anonymize/defaultconfig"
	"fhirdeid/fhir/model"
	"fhirdeid/fhirpath"
)

func init() {
	register(command{
		name:    "config",
		summary: "show the default de-identification configuration, or check one",
		run:     runConfig,
	})
}

const configUsage = `Usage:
  fhirdeid config show [--profile NAME]   print a built-in configuration: safe-harbor (HIPAA Safe
                                          Harbor, R4; the default) or longitudinal (per-patient date shift)
  fhirdeid config check [flags] FILE|-    load and validate a configuration (JSON or YAML)

The configuration format is that of Microsoft's FHIR anonymizer.
`

func runConfig(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, configUsage)
		return usageError{"missing subcommand: show or check"}
	}
	switch args[0] {
	case "show":
		fs := flag.NewFlagSet("config show", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		profile := fs.String("profile", defaultconfig.DefaultProfile, "the built-in profile: "+strings.Join(defaultconfig.Profiles(), " or "))
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return usageError{"config show takes no arguments"}
		}
		data, ok := defaultconfig.Profile(*profile)
		if !ok {
			return usageError{fmt.Sprintf("--profile: unknown profile %q: the built-in profiles are %s", *profile, strings.Join(defaultconfig.Profiles(), " and "))}
		}
		_, err := e.stdout.Write(data)
		return err
	case "check":
		return runConfigCheck(e, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, configUsage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: use show or check", args[0])}
}

func runConfigCheck(e *env, args []string) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	version := fs.String("fhir-version", "R4", "FHIR release the configuration is for: R4 or STU3")
	yamlFmt := fs.Bool("yaml", false, "read YAML (default: JSON if the file starts with '{', YAML otherwise)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"config check needs one FILE (or - for standard input)"}
	}
	name := fs.Arg(0)
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(e.stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("reading configuration: %w", err)
	}
	opts := anonymize.Options{FHIRVersion: *version, Compiler: anonymize.FHIRPathCompiler()}
	if v, ok := model.ParseVersion(*version); ok {
		// Check the paths against the model: a misspelt element is reported
		// as a warning, as the Microsoft anonymizer accepts it silently.
		opts.Compiler = anonymize.FHIRPathCompilerWithWarnings(fhirpath.WithModel(model.Get(v)))
	}
	if *yamlFmt {
		opts.Format = anonymize.YAML
	}
	cfg, err := anonymize.ParseConfig(data, opts)
	if err != nil {
		var ce *anonymize.ConfigError
		if errors.As(err, &ce) {
			return &exitError{code: 1, err: fmt.Errorf("%s: %w", name, err)}
		}
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(e.stderr, "%s: warning: %s\n", name, w)
	}
	fmt.Fprintf(e.stdout, "%s: ok, %d rules, processingErrors %s\n", name, cfg.NumRules(), cfg.ProcessingErrors())
	return nil
}
