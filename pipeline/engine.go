package pipeline

import (
	"context"
	"encoding/json"
	"fmt"

	"fhirdeid/anonymize"
	"fhirdeid/jsontree"
)

// EngineDeidentifier is the Deidentifier backed by an anonymize.Engine.
type EngineDeidentifier struct {
	engine *anonymize.Engine
	// scrubHolder holds the identifiers collected for the scrub method
	// (scrub.go).
	scrubHolder
	// Folder is the prefix of the "folder" date-shift scope; it should be
	// stable from run to run (the pipeline's name), so that incremental runs
	// shift dates alike.
	Folder string
}

// NewEngineDeidentifier returns a Deidentifier running e.
func NewEngineDeidentifier(e *anonymize.Engine) *EngineDeidentifier {
	return &EngineDeidentifier{engine: e}
}

// Resource de-identifies one resource with the engine. file names the file
// for the "file" date-shift scope.
func (d *EngineDeidentifier) Resource(ctx context.Context, file string, line int64, res, dst []byte) ([]byte, anonymize.Stats, error) {
	return d.engine.AppendAnonymizedJSON(d.scrubContext(ctx), dst, res,
		anonymize.FileContext{FileName: file + ".ndjson", FolderName: d.Folder, Inspector: inspectorFrom(ctx)})
}

// ID de-identifies a resource id the way the engine's rules treat
// Resource.id, by running a resource that holds only its type and id
// through the engine.
func (d *EngineDeidentifier) ID(ctx context.Context, typ, id string) (string, error) {
	doc, err := json.Marshal(struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}{typ, id})
	if err != nil {
		return "", err
	}
	out, _, err := d.engine.AnonymizeJSON(ctx, doc, anonymize.FileContext{FileName: typ + ".ndjson", FolderName: d.Folder})
	if err != nil {
		return "", fmt.Errorf("de-identify a deleted %s id: %w", typ, err)
	}
	root, err := jsontree.Parse(out)
	if err != nil {
		return "", err
	}
	if n := root.Get("id"); n != nil && n.Kind == jsontree.String {
		return n.Value(), nil
	}
	return "", nil
}
