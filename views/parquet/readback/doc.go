// Package readback holds only tests: it reads the Parquet files that
// fhirdeid/views/parquet writes with an independent reader, Apache Arrow's
// Go Parquet implementation, and checks every value and column type.
//
// It is a module of its own (fhirdeid/views/parquet/readback, with a replace
// of fhirdeid to this repository) so that Arrow and its dependencies never
// enter fhirdeid's module graph or binary. Run it with
//
//	cd views/parquet/readback && go test ./...
//
// (.ci/run does).
package readback
