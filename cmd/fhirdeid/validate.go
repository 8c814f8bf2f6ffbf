package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"fhirdeid/config"
	"fhirdeid/storage"
)

func init() {
	register(command{name: "validate", summary: "check a pipeline configuration file without contacting any server", run: runValidate})
}

func runValidate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("fhirdeid validate", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: fhirdeid validate CONFIG

Checks a pipeline configuration: its keys and values, that every referenced
environment variable and secret file exists, that the anonymizer rules
compile, and that the destination's storage scheme is supported. It contacts
no server and creates nothing.`)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"need exactly one configuration file"}
	}
	cfg, err := config.Load(fs.Arg(0), e.getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, name := range cfg.Names() {
		pc := cfg.Pipelines[name]
		field := "pipelines." + name
		if _, err := pc.Source.Auth.Authenticator(field+".source.auth", nil, pc.Source.URL); err != nil {
			return &exitError{code: 2, err: err}
		}
		if err := storage.CheckURL(pc.Destination); err != nil {
			return &exitError{code: 2, err: &config.Error{File: fs.Arg(0), Field: field + ".destination", Msg: err.Error()}}
		}
		eng, err := pc.LoadEngine(field)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		rules := eng.Config().NumRules()
		fmt.Fprintf(e.stdout, "%s: %s → %s, %d anonymizer rules, schedule %q\n", name, pc.Source.URL,
			storage.Redact(pc.Destination), rules, pc.Schedule)
		for _, w := range eng.Config().Warnings() {
			fmt.Fprintf(e.stdout, "%s: warning: %s\n", name, w)
		}
		for _, w := range eng.Warnings {
			fmt.Fprintf(e.stdout, "%s: warning: %s\n", name, w)
		}
		if len(pc.Views) > 0 {
			vs, err := pc.LoadViews(field)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			names := make([]string, len(vs))
			for i, v := range vs {
				names[i] = v.Name
			}
			fmt.Fprintf(e.stdout, "%s: %d views: %s\n", name, len(vs), strings.Join(names, ", "))
		}
	}
	fmt.Fprintln(e.stdout, "configuration OK")
	return nil
}
