package tables

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"

	"fhirdeid/storage"
)

// manifestName is the file, in a run's (or snapshot's) views folder, that
// records which views and build wrote its tables.
const manifestName = "views/tables.json"

// tablesManifest is <run>/views/tables.json.
type tablesManifest struct {
	// Fingerprint digests the views' definitions and fhirdeid's build.
	Fingerprint string `json:"fingerprint"`
	// Views maps each view (table) to its resource type.
	Views map[string]string `json:"views"`
}

// fingerprint is the sink's fingerprint: the caller's digest of the views
// and the build that evaluates them ("" when the caller gave none).
func (s *Sink) fingerprint() string {
	if s.opt.Fingerprint == "" {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(s.opt.Fingerprint))
	if bi, ok := debug.ReadBuildInfo(); ok {
		h.Write([]byte("\x00" + bi.Main.Path + "\x00" + bi.Main.Version))
		for _, st := range bi.Settings {
			if st.Key == "vcs.revision" || st.Key == "vcs.modified" {
				h.Write([]byte("\x00" + st.Key + "=" + st.Value))
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// writeManifest records the sink's views in run's views folder.
func (s *Sink) writeManifest(ctx context.Context, run string) error {
	fp := s.fingerprint()
	if fp == "" {
		return nil
	}
	m := tablesManifest{Fingerprint: fp, Views: map[string]string{}}
	for _, v := range s.views {
		m.Views[v.Name] = v.Resource
	}
	data, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return err
	}
	return s.store.WriteAll(ctx, storage.RunKey(run, manifestName), "application/json", data)
}

// ViewsOf returns the names of the views of resource type typ.
func (s *Sink) ViewsOf(typ string) []string {
	var out []string
	for _, i := range s.byType[typ] {
		out = append(out, s.views[i].Name)
	}
	return out
}

// partName is a part written for an output file by File: part-SEQ-WORKER.
var partName = regexp.MustCompile(`^part-([0-9]{3,9})-[0-9]{2,4}\.(parquet|csv)$`)

// Clear deletes the parts of the tables of type typ in run (those an
// interrupted attempt may have left), so that new parts never mix with
// them.
func (s *Sink) Clear(ctx context.Context, run, typ string) error {
	for _, name := range s.ViewsOf(typ) {
		keys, err := s.store.List(ctx, storage.RunKey(run, "views/"+name+"/"))
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := s.store.Delete(ctx, k); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// Reuse copies the tables of the views of type typ from run src (a run or
// snapshots/<id>) into run dst, after deleting what dst has of them. It
// copies only when src recorded tables of the same views and build
// (tables.json) and its folder of each view holds only parts written for
// output files: with seqs non-nil, for those output files of typ and no
// other (each with every part of this sink's formats). It returns false,
// having changed nothing, when src's tables cannot be told identical; the
// caller then computes them. A copy is made by the storage service when it
// can (gocloud blob Copy), and each copied object appears whole.
func (s *Sink) Reuse(ctx context.Context, src, dst, typ string, seqs []int) (bool, error) {
	fp := s.fingerprint()
	names := s.ViewsOf(typ)
	if fp == "" || len(names) == 0 {
		return false, nil
	}
	data, err := s.store.ReadAll(ctx, storage.RunKey(src, manifestName))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var m tablesManifest
	if err := json.Unmarshal(data, &m); err != nil || m.Fingerprint != fp {
		return false, nil
	}
	copies := map[string][]string{} // view → keys to copy
	for _, name := range names {
		if m.Views[name] != typ {
			return false, nil
		}
		keys, err := s.store.List(ctx, storage.RunKey(src, "views/"+name+"/"))
		if err != nil {
			return false, err
		}
		have := map[string]map[string]bool{} // seq → extensions
		for _, k := range keys {
			sm := partName.FindStringSubmatch(path.Base(k))
			if sm == nil {
				return false, nil // an empty part, or parts of a mixed file
			}
			seq, _ := strconv.Atoi(sm[1])
			if seqs != nil && !slices.Contains(seqs, seq) {
				return false, nil // a part of no output file of the run
			}
			if have[sm[1]] == nil {
				have[sm[1]] = map[string]bool{}
			}
			have[sm[1]][sm[2]] = true
			if sm[2] == "parquet" || s.opt.CSV {
				copies[name] = append(copies[name], k)
			}
		}
		if len(have) == 0 {
			return false, nil
		}
		for _, exts := range have {
			if !exts["parquet"] || (s.opt.CSV && !exts["csv"]) {
				return false, nil
			}
		}
		for _, q := range seqs {
			if have[fmt.Sprintf("%03d", q)] == nil {
				return false, nil
			}
		}
	}
	if err := s.Clear(ctx, dst, typ); err != nil {
		return false, err
	}
	for _, name := range names {
		for _, k := range copies[name] {
			to := storage.RunKey(dst, "views/"+name+"/"+path.Base(k))
			if err := s.store.Bucket().Copy(ctx, to, k, nil); err != nil {
				return false, fmt.Errorf("storage: copy %s to %s: %w", k, to, err)
			}
		}
	}
	return true, nil
}
