package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fhirdeid/pipeline"
	"fhirdeid/storage"
	"fhirdeid/views"
	"fhirdeid/views/tables"
)

// LoadViews compiles the pipeline's views: "builtin" (every built-in view),
// "builtin:NAME", or the path of a ViewDefinition JSON file (relative to the
// configuration's folder once Load has run). field is the pipeline's field
// ("pipelines.NAME"). Errors name the entry, the view, the element of the
// ViewDefinition and the reason.
func (pc *Pipeline) LoadViews(field string) ([]*views.View, error) {
	var out []*views.View
	seen := map[string]string{}
	add := func(f string, v *views.View) error {
		if prev, dup := seen[v.Name]; dup {
			return &Error{Field: f, Msg: fmt.Sprintf("view %s is also defined by %s: view names must be unique (they name the tables)", v.Name, prev)}
		}
		seen[v.Name] = f
		out = append(out, v)
		return nil
	}
	for i, entry := range pc.Views {
		f := fmt.Sprintf("%s.views[%d]", field, i)
		switch {
		case entry == "builtin":
			vs, err := views.Builtins()
			if err != nil {
				return nil, &Error{Field: f, Msg: err.Error()}
			}
			for _, v := range vs {
				if err := add(f, v); err != nil {
					return nil, err
				}
			}
		case strings.HasPrefix(entry, "builtin:"):
			v, err := views.Builtin(strings.TrimPrefix(entry, "builtin:"))
			if err != nil {
				return nil, &Error{Field: f, Msg: err.Error()}
			}
			if err := add(f, v); err != nil {
				return nil, err
			}
		default:
			fh, err := os.Open(entry)
			if err != nil {
				return nil, &Error{Field: f, Msg: "cannot read the ViewDefinition file"}
			}
			v, err := views.Load(fh, filepath.Base(entry))
			fh.Close()
			if err != nil {
				var ve *views.Error
				if errors.As(err, &ve) {
					return nil, &Error{Field: f, Msg: ve.Error()}
				}
				return nil, &Error{Field: f, Msg: err.Error()}
			}
			if err := add(f, v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// checkViews makes view paths absolute and compiles the views.
func (pc *Pipeline) checkViews(field, dir string) *Error {
	for i, v := range pc.Views {
		if v == "" {
			return &Error{Field: fmt.Sprintf("%s.views[%d]", field, i), Msg: "empty: builtin, builtin:NAME or a ViewDefinition file"}
		}
		if v != "builtin" && !strings.HasPrefix(v, "builtin:") && !filepath.IsAbs(v) {
			pc.Views[i] = filepath.Join(dir, v)
		}
	}
	if _, err := pc.LoadViews(field); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return ce
		}
		return &Error{Field: field + ".views", Msg: err.Error()}
	}
	return nil
}

// viewTables adapts tables.Sink to pipeline.Tables.
type viewTables struct{ s *tables.Sink }

func (t viewTables) File(ctx context.Context, run, typ string, seq, workers int) (pipeline.TableFile, error) {
	f, err := t.s.File(ctx, run, typ, seq, workers)
	if f == nil || err != nil {
		return nil, err
	}
	return f, nil
}

// Names names the tables (the views), for report.json.
func (t viewTables) Names() []string {
	var out []string
	for _, v := range t.s.Views() {
		out = append(out, v.Name)
	}
	return out
}

// Finish completes the run's tables (see tables.Sink.Finish).
func (t viewTables) Finish(ctx context.Context, run string) error { return t.s.Finish(ctx, run) }

// ViewsOf, Reuse and Clear let a snapshot copy tables (see
// pipeline.TablesReuser).
func (t viewTables) ViewsOf(typ string) []string { return t.s.ViewsOf(typ) }

func (t viewTables) Reuse(ctx context.Context, src, dst, typ string, seqs []int) (bool, error) {
	return t.s.Reuse(ctx, src, dst, typ, seqs)
}

func (t viewTables) Clear(ctx context.Context, run, typ string) error {
	return t.s.Clear(ctx, run, typ)
}

// viewsFingerprint digests the sources of the pipeline's views ("" when
// one cannot be read: tables are then never reused).
func (pc *Pipeline) viewsFingerprint() string {
	h := sha256.New()
	for _, entry := range pc.Views {
		var data []byte
		var err error
		switch {
		case entry == "builtin":
			for _, name := range views.BuiltinNames() {
				b, berr := views.BuiltinJSON(name)
				if berr != nil {
					return ""
				}
				fmt.Fprintf(h, "builtin:%s\x00%d\x00", name, len(b))
				h.Write(b)
			}
			continue
		case strings.HasPrefix(entry, "builtin:"):
			data, err = views.BuiltinJSON(strings.TrimPrefix(entry, "builtin:"))
		default:
			data, err = os.ReadFile(entry)
		}
		if err != nil {
			return ""
		}
		fmt.Fprintf(h, "%s\x00%d\x00", entry, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// tablesFor returns the pipeline's research tables, or nil without views.
func (pc *Pipeline) tablesFor(field string, store *storage.Store) (pipeline.Tables, error) {
	if len(pc.Views) == 0 {
		return nil, nil
	}
	vs, err := pc.LoadViews(field)
	if err != nil {
		return nil, err
	}
	return viewTables{tables.New(store, vs, tables.Options{CSV: pc.ViewsCSV, Fingerprint: pc.viewsFingerprint()})}, nil
}
