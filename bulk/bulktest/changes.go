package bulktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"fhirdeid/bulk"
)

// A server's data can change between exports: a ChangeSet applied with
// Apply adds, updates and deletes resources. Changed resources get
// meta.lastUpdated = the time of the change, so that an export with _since
// returns them, and deletions are listed in the manifest's deleted array
// (as Bundles of DELETE entries) of exports whose _since precedes them.
// Once data has changed, resources without meta.lastUpdated count as last
// updated when the server was created, and the passthrough fast path is
// off.

// ChangeSet is a set of changes to the server's data.
type ChangeSet struct {
	// Upsert are new resources and new versions of existing ones (same
	// type and id), one JSON object each.
	Upsert [][]byte
	// Delete are "Type/id" references of resources to delete.
	Delete []string
}

// changeState is the server's data changes.
type changeState struct {
	// upserts maps "Type/id" to the current version of a changed resource.
	upserts map[string][]byte
	// deleted maps "Type/id" to the time of its deletion.
	deleted map[string]time.Time
}

// Apply applies a change set now. Resources of the set get meta.lastUpdated
// set to the current time; a resource both upserted and deleted is deleted.
func (s *Server) Apply(cs ChangeSet) error {
	at := s.opts.Now().UTC()
	type up struct {
		key  string
		line []byte
	}
	var ups []up
	for i, line := range cs.Upsert {
		var v map[string]any
		if err := json.Unmarshal(line, &v); err != nil {
			return fmt.Errorf("bulktest: change set resource %d: not a JSON object", i+1)
		}
		rt, _ := v["resourceType"].(string)
		id, _ := v["id"].(string)
		if rt == "" || id == "" {
			return fmt.Errorf("bulktest: change set resource %d: no resourceType or id", i+1)
		}
		meta, _ := v["meta"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
		}
		meta["lastUpdated"] = at.Format(time.RFC3339Nano)
		v["meta"] = meta
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		ups = append(ups, up{rt + "/" + id, b})
	}
	for _, ref := range cs.Delete {
		if t, id, ok := strings.Cut(ref, "/"); !ok || t == "" || id == "" {
			return fmt.Errorf("bulktest: change set deletion %q is not Type/id", ref)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changes == nil {
		s.changes = &changeState{upserts: map[string][]byte{}, deleted: map[string]time.Time{}}
	}
	for _, u := range ups {
		s.changes.upserts[u.key] = u.line
		delete(s.changes.deleted, u.key)
	}
	for _, ref := range cs.Delete {
		delete(s.changes.upserts, ref)
		s.changes.deleted[ref] = at
	}
	return nil
}

// changed reports whether a change set was applied.
func (s *Server) changed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changes != nil
}

// defaultLastUpdated is the last update time of resources without
// meta.lastUpdated once data changed: just before the server was created.
func (s *Server) defaultLastUpdated() (time.Time, error) {
	if !s.changed() {
		return time.Time{}, errors.New("no default")
	}
	return s.created.Truncate(time.Second).Add(-time.Second), nil
}

// withChanges wraps an eachResource callback so that deleted resources are
// skipped and changed ones replaced; flush then sends the new resources.
func (s *Server) withChanges(fn func([]byte) error) (wrapped func([]byte) error, flush func() error) {
	s.mu.Lock()
	if s.changes == nil {
		s.mu.Unlock()
		return fn, func() error { return nil }
	}
	upserts := make(map[string][]byte, len(s.changes.upserts))
	for k, v := range s.changes.upserts {
		upserts[k] = v
	}
	deleted := make(map[string]bool, len(s.changes.deleted))
	for k := range s.changes.deleted {
		deleted[k] = true
	}
	s.mu.Unlock()
	sent := map[string]bool{}
	wrapped = func(line []byte) error {
		var r struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(line, &r) != nil {
			return fn(line)
		}
		key := r.ResourceType + "/" + r.ID
		if deleted[key] {
			return nil
		}
		if u, ok := upserts[key]; ok {
			sent[key] = true
			return fn(u)
		}
		return fn(line)
	}
	flush = func() error {
		keys := make([]string, 0, len(upserts))
		for k := range upserts {
			if !sent[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := fn(upserts[k]); err != nil {
				return err
			}
		}
		return nil
	}
	return wrapped, flush
}

// deletedSince returns the references deleted after since, in order.
func (s *Server) deletedSince(since time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changes == nil {
		return nil
	}
	var out []string
	for ref, at := range s.changes.deleted {
		if at.After(since) {
			out = append(out, ref)
		}
	}
	sort.Strings(out)
	return out
}

// afterBuild applies Options.Changes once Options.ChangesAfter exports
// were built.
func (s *Server) afterBuild() {
	if s.opts.Changes == nil {
		return
	}
	s.mu.Lock()
	s.builds++
	apply := s.builds == s.opts.ChangesAfter
	s.mu.Unlock()
	if apply {
		// The change comes after the export's transaction time (its
		// kick-off), so an export with that _since returns it.
		_ = s.Apply(*s.opts.Changes)
	}
}

// changesHandler applies a change set posted as NDJSON: resources to add or
// update, and Bundles of DELETE entries (the Bulk Data deleted format).
func (s *Server) changesHandler(w http.ResponseWriter, r *http.Request) {
	if s.opts.Auth != nil && !s.authorized(w, r) {
		return
	}
	cs, err := ReadChangeSet(http.MaxBytesReader(w, r.Body, 256<<20))
	if err == nil {
		err = s.Apply(cs)
	}
	if err != nil {
		outcome(w, http.StatusBadRequest, "error", "invalid", err.Error())
		return
	}
	outcome(w, http.StatusOK, "information", "informational",
		fmt.Sprintf("applied %d upserts and %d deletions", len(cs.Upsert), len(cs.Delete)))
}

// ReadChangeSet reads a change set from NDJSON: each line a resource to add
// or update, or a Bundle of DELETE entries naming resources to delete.
func ReadChangeSet(r io.Reader) (ChangeSet, error) {
	var cs ChangeSet
	lr := bulk.NewLineReader(r, 64<<20)
	for lr.Next() {
		line := lr.Line()
		rt, err := bulk.ResourceType(line)
		if err != nil {
			return cs, fmt.Errorf("change set line %d: %v", lr.LineNumber(), err)
		}
		if rt == "Bundle" && bytes.Contains(line, []byte(`"DELETE"`)) {
			refs, err := bulk.Tombstones(line)
			if err != nil {
				return cs, fmt.Errorf("change set line %d: %v", lr.LineNumber(), err)
			}
			cs.Delete = append(cs.Delete, refs...)
			continue
		}
		cs.Upsert = append(cs.Upsert, slices.Clone(line))
	}
	return cs, lr.Err()
}

// WriteChangeSet writes cs as NDJSON, the format ReadChangeSet reads.
func WriteChangeSet(w io.Writer, cs ChangeSet) error {
	for _, l := range cs.Upsert {
		if _, err := w.Write(append(slices.Clone(l), '\n')); err != nil {
			return err
		}
	}
	for _, ref := range cs.Delete {
		b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction",
			"entry": []map[string]any{{"request": map[string]string{"method": "DELETE", "url": ref}}}})
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// RandomChanges returns a deterministic change set over resources:
// updates new versions of existing resources (an Observation's
// valueQuantity.value or a resource's status changes, and meta.versionId
// always), deletes resources of types that nothing else is expected to
// reference (Observation, Condition, Procedure… — any type but Patient
// when those run out), and adds copies of existing Observations (or other
// resources) under new ids. Patients are never deleted.
func RandomChanges(resources [][]byte, seed uint64, updates, deletes, adds int) (ChangeSet, error) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a9))
	// Only the resources picked are decoded whole.
	type res struct {
		typ, id string
		line    []byte
	}
	var all []res
	for i, line := range resources {
		var k struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(line, &k); err != nil {
			return ChangeSet{}, fmt.Errorf("bulktest: resource %d: not a JSON object", i+1)
		}
		if k.ResourceType == "" || k.ID == "" {
			continue
		}
		all = append(all, res{k.ResourceType, k.ID, line})
	}
	if updates+deletes > len(all) {
		return ChangeSet{}, errors.New("bulktest: more changes asked than resources")
	}
	perm := rng.Perm(len(all))
	leaf := map[string]bool{"Observation": true, "Condition": true, "Procedure": true, "Immunization": true,
		"MedicationRequest": true, "DiagnosticReport": true, "AllergyIntolerance": true}
	used := map[int]bool{}
	var cs ChangeSet
	// Deletions: leaf types first, then anything but Patient.
	for pass := 0; pass < 2 && len(cs.Delete) < deletes; pass++ {
		for _, i := range perm {
			if len(cs.Delete) >= deletes {
				break
			}
			r := all[i]
			if used[i] || r.typ == "Patient" || (pass == 0 && !leaf[r.typ]) {
				continue
			}
			used[i] = true
			cs.Delete = append(cs.Delete, r.typ+"/"+r.id)
		}
	}
	decode := func(line []byte) map[string]any {
		var v map[string]any
		_ = json.Unmarshal(line, &v)
		return v
	}
	for _, i := range perm {
		if len(cs.Upsert) >= updates {
			break
		}
		if used[i] {
			continue
		}
		used[i] = true
		v := decode(all[i].line)
		bump(v, rng)
		b, err := json.Marshal(v)
		if err != nil {
			return ChangeSet{}, err
		}
		cs.Upsert = append(cs.Upsert, b)
	}
	// New resources: copies of Observations when there are some.
	var models []int
	for i, r := range all {
		if r.typ == "Observation" {
			models = append(models, i)
		}
	}
	if len(models) == 0 {
		for i := range all {
			models = append(models, i)
		}
	}
	for k := 0; k < adds && len(models) > 0; k++ {
		v := decode(all[models[rng.IntN(len(models))]].line)
		v["id"] = fmt.Sprintf("%s-new%d", v["id"], k)
		bump(v, rng)
		b, err := json.Marshal(v)
		if err != nil {
			return ChangeSet{}, err
		}
		cs.Upsert = append(cs.Upsert, b)
	}
	if len(cs.Delete) < deletes || len(cs.Upsert) < updates+adds {
		return cs, errors.New("bulktest: not enough resources for the change set")
	}
	return cs, nil
}

// bump makes a new version of a resource: a changed value and versionId.
func bump(v map[string]any, rng *rand.Rand) {
	meta, _ := v["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	ver := 1
	if s, ok := meta["versionId"].(string); ok {
		fmt.Sscan(s, &ver)
	}
	meta["versionId"] = fmt.Sprint(ver + 1)
	v["meta"] = meta
	if q, ok := v["valueQuantity"].(map[string]any); ok {
		if f, ok := q["value"].(float64); ok {
			q["value"] = f + float64(1+rng.IntN(9))
			return
		}
	}
	switch v["status"] {
	case "final":
		v["status"] = "amended"
	case "finished":
		v["status"] = "entered-in-error"
	case "active":
		v["status"] = "inactive"
	case "completed":
		v["status"] = "stopped"
	}
}

// AllResources returns every resource of opts' data (Dir and Resources),
// for building a change set over it.
func AllResources(opts Options) ([][]byte, error) {
	s := &Server{opts: opts}
	var out [][]byte
	err := s.eachResource(func(line []byte) error {
		out = append(out, slices.Clone(line))
		return nil
	})
	return out, err
}
