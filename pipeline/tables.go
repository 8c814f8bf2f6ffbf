package pipeline

import "context"

// Tables computes research tables (SQL on FHIR views) from the
// de-identified resources of a run, in the same streaming pass as the
// de-identification: they never see a raw resource. Package views/tables
// implements it; config wires it from a pipeline's "views:".
type Tables interface {
	// File starts the tables of one attempt at an output file of run (its
	// resource type and sequence number) processed by workers concurrent
	// workers. It returns nil when no table uses resources of that type.
	File(ctx context.Context, run, typ string, seq, workers int) (TableFile, error)
}

// TableFile receives the de-identified resources of one file attempt.
type TableFile interface {
	// Resource is called with each de-identified resource (compact JSON) by
	// worker w (0 ≤ w < workers); calls with the same w are sequential. The
	// bytes are valid only during the call. An error fails the file.
	Resource(w int, resource []byte) error
	// Close completes the tables once the file is stored. It returns a
	// warning (resources a view could not turn into rows: the run is then
	// partial) or an error that fails the file.
	Close(ctx context.Context) (warning string, err error)
	// Abort discards the attempt's tables.
	Abort()
}

// TablesFinisher is implemented by Tables that complete a run's tables
// before it is committed (a table without rows still gets its schema).
type TablesFinisher interface {
	Finish(ctx context.Context, run string) error
}

// TableRows is implemented by a TableFile that counts its rows: after
// Close, Rows returns the rows written, by view (table) name. The file's
// counts carry them into report.json ("tables").
type TableRows interface {
	Rows() map[string]int64
}

// TableNames is implemented by Tables that name their tables, so that
// report.json lists a table without rows too.
type TableNames interface {
	Names() []string
}

// TablesReuser is implemented by Tables that can copy the tables of a type
// from a run or snapshot that computed them with the same views, instead of
// computing them again (the merged snapshot, when a type holds exactly the
// resources of one source: snapshot.go).
type TablesReuser interface {
	// ViewsOf names the views (tables) of resource type typ.
	ViewsOf(typ string) []string
	// Reuse copies the tables of type typ from src (a run id or
	// snapshots/<id>) into dst after deleting dst's; false (nothing changed)
	// when src's tables cannot be told to be of the same views, or, with
	// seqs non-nil, of exactly those output files of typ.
	Reuse(ctx context.Context, src, dst, typ string, seqs []int) (bool, error)
	// Clear deletes dst's tables of type typ.
	Clear(ctx context.Context, run, typ string) error
}
