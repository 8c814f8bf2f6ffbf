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
		fmt.Fprintln(e.stderr, `Usage: fhirdeid validate [--online] CONFIG

Checks a pipeline configuration: its keys and values, that every referenced
environment variable and secret file exists, that Azure Key Vault references
(azurekeyvault://VAULT/NAME) are well formed, that the anonymizer rules
compile, and that the destination's storage scheme is supported. It contacts
no server and creates nothing; with --online it also reads the Key Vault
references (through the Azure credential of the environment) and connects to
the Temporal service of a temporal: section.`)
	}
	online := fs.Bool("online", false, "also resolve the Azure Key Vault references and connect to Temporal")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usageError{"need exactly one configuration file"}
	}
	path := pos[0]
	cfg, err := config.Load(path, e.getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	refs := cfg.SecretRefs()
	if *online {
		if err := cfg.ResolveSecrets(ctx, nil); err != nil {
			return &exitError{code: 2, err: err}
		}
		if len(refs) > 0 {
			fmt.Fprintf(e.stdout, "%d Key Vault references resolved\n", len(refs))
		}
	} else {
		cfg.MarkOffline()
		for _, field := range config.SortedKeys(refs) {
			fmt.Fprintf(e.stdout, "%s: Key Vault reference %s (not contacted; --online reads it)\n", field, refs[field])
		}
	}
	// unresolved reports whether a field under prefix still holds a Key
	// Vault reference (validate without --online).
	unresolved := func(prefix string) bool {
		for f := range refs {
			if !*online && strings.HasPrefix(f, prefix) {
				return true
			}
		}
		return false
	}
	for _, name := range cfg.Names() {
		pc := cfg.Pipelines[name]
		field := "pipelines." + name
		if !unresolved(field + ".source.") {
			auth, err := pc.Source.Auth.Authenticator(field+".source.auth", nil, pc.Source.URL)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if _, _, err := pc.Source.StorageAuth.Build(field+".source.storageAuth", nil, auth); err != nil {
				return &exitError{code: 2, err: err}
			}
		}
		if err := storage.CheckURL(pc.Destination); err != nil {
			return &exitError{code: 2, err: &config.Error{File: path, Field: field + ".destination", Msg: err.Error()}}
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
	if err := validateTemporal(ctx, e, cfg, *online); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "configuration OK")
	return nil
}
