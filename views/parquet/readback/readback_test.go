package readback

// Independent read-back: Parquet files written by this package are read
// with Apache Arrow's Go Parquet reader (a test-only dependency, never
// linked into fhirdeid) and every value and column type is compared with
// the rows the view produced.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	apq "github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"

	"fhirdeid/views"
	vpq "fhirdeid/views/parquet"
)

type column struct {
	name     string
	physical apq.Type
	logical  schema.LogicalType
	maxDef   int16
	maxRep   int16
}

// readParquet reads a whole file into rows of Go values: nil, string,
// int64, float64, bool, or []any for repeated columns.
func readParquet(t *testing.T, path string) ([]column, [][]any) {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatalf("arrow cannot open %s: %v", path, err)
	}
	defer rdr.Close()
	sc := rdr.MetaData().Schema
	var cols []column
	for i := 0; i < sc.NumColumns(); i++ {
		c := sc.Column(i)
		cols = append(cols, column{c.Name(), c.PhysicalType(), c.LogicalType(), c.MaxDefinitionLevel(), c.MaxRepetitionLevel()})
	}
	var rows [][]any
	for g := 0; g < rdr.NumRowGroups(); g++ {
		rg := rdr.RowGroup(g)
		n := int(rg.NumRows())
		base := len(rows)
		for i := 0; i < n; i++ {
			rows = append(rows, make([]any, len(cols)))
		}
		for ci, col := range cols {
			cr, err := rg.Column(ci)
			if err != nil {
				t.Fatal(err)
			}
			var vals []any
			var defs, reps []int16
			for cr.HasNext() {
				d := make([]int16, 1024)
				r := make([]int16, 1024)
				var total int64
				var got []any
				switch x := cr.(type) {
				case *file.ByteArrayColumnChunkReader:
					buf := make([]apq.ByteArray, 1024)
					var m int
					total, m, err = x.ReadBatch(1024, buf, d, r)
					for _, b := range buf[:m] {
						got = append(got, string(b))
					}
				case *file.Int32ColumnChunkReader:
					buf := make([]int32, 1024)
					var m int
					total, m, err = x.ReadBatch(1024, buf, d, r)
					for _, b := range buf[:m] {
						got = append(got, b)
					}
				case *file.Int64ColumnChunkReader:
					buf := make([]int64, 1024)
					var m int
					total, m, err = x.ReadBatch(1024, buf, d, r)
					for _, b := range buf[:m] {
						got = append(got, b)
					}
				case *file.Float64ColumnChunkReader:
					buf := make([]float64, 1024)
					var m int
					total, m, err = x.ReadBatch(1024, buf, d, r)
					for _, b := range buf[:m] {
						got = append(got, b)
					}
				case *file.BooleanColumnChunkReader:
					buf := make([]bool, 1024)
					var m int
					total, m, err = x.ReadBatch(1024, buf, d, r)
					for _, b := range buf[:m] {
						got = append(got, b)
					}
				default:
					t.Fatalf("column %s: unexpected reader %T", col.name, cr)
				}
				if err != nil {
					t.Fatalf("column %s: %v", col.name, err)
				}
				vals = append(vals, got...)
				defs = append(defs, d[:total]...)
				reps = append(reps, r[:total]...)
			}
			row, vi := base-1, 0
			for k := range defs {
				rep := int16(0)
				if col.maxRep > 0 {
					rep = reps[k]
				}
				if rep == 0 {
					row++
					if col.maxRep > 0 {
						rows[row][ci] = []any{}
					}
				}
				if defs[k] == col.maxDef {
					if col.maxRep > 0 {
						rows[row][ci] = append(rows[row][ci].([]any), vals[vi])
					} else {
						rows[row][ci] = vals[vi]
					}
					vi++
				}
			}
			if row != base+n-1 || vi != len(vals) {
				t.Fatalf("column %s of row group %d: %d rows and %d/%d values decoded, want %d rows", col.name, g, row-base+1, vi, len(vals), n)
			}
		}
	}
	return cols, rows
}

// expected converts a row of the view into the Go values the reader gives.
func expected(v *views.View, row []views.Value) []any {
	out := make([]any, len(row))
	for i, val := range row {
		k := v.Columns[i].Kind
		sqlType := v.Columns[i].SQLType
		if v.Columns[i].Collection {
			l := []any{}
			for _, it := range val.List {
				l = append(l, goValue(k, sqlType, it))
			}
			out[i] = l
			continue
		}
		if val.Null {
			continue
		}
		out[i] = goValue(k, sqlType, val)
	}
	return out
}

// goValue is the value the reader gives for v. Dates and timestamps are
// computed from the text with package time, not from v.Int.
func goValue(k views.Kind, sqlType string, v views.Value) any {
	switch sqlType {
	case views.SQLDate:
		t, err := time.Parse(time.DateOnly, v.Text[:10])
		if err != nil {
			panic(err)
		}
		return int32(t.Sub(time.Unix(0, 0).UTC()).Hours() / 24)
	case views.SQLTimestampTZ:
		t, err := time.Parse(time.RFC3339Nano, v.Text)
		if err != nil {
			panic(err)
		}
		return t.UnixMicro()
	case views.SQLTimestamp:
		t, err := time.Parse(time.RFC3339Nano, v.Text)
		if err != nil {
			panic(err)
		}
		_, off := t.Zone()
		return t.UnixMicro() + int64(off)*1e6
	}
	switch k {
	case views.KindInteger:
		return v.Int
	case views.KindBoolean:
		return v.Int != 0
	case views.KindDecimal:
		f, err := strconv.ParseFloat(v.Text, 64)
		if err != nil {
			panic(err)
		}
		return f
	}
	return strings.Clone(v.String())
}

// checkTypes checks each column's physical and logical type against the
// view's column.
func checkTypes(t *testing.T, v *views.View, cols []column) {
	t.Helper()
	if len(cols) != len(v.Columns) {
		t.Fatalf("%s: %d columns read, want %d", v.Name, len(cols), len(v.Columns))
	}
	for i, c := range v.Columns {
		got := cols[i]
		if got.name != c.Name {
			t.Errorf("%s: column %d is %s, want %s", v.Name, i, got.name, c.Name)
		}
		wantRep := int16(0)
		if c.Collection {
			wantRep = 1
		}
		if got.maxDef != 1 || got.maxRep != wantRep {
			t.Errorf("%s.%s: definition/repetition levels %d/%d, want 1/%d", v.Name, c.Name, got.maxDef, got.maxRep, wantRep)
		}
		switch c.SQLType {
		case views.SQLDate:
			if _, ok := got.logical.(schema.DateLogicalType); got.physical != apq.Types.Int32 || !ok {
				t.Errorf("%s.%s: %v %v, want INT32 DATE", v.Name, c.Name, got.physical, got.logical)
			}
			continue
		case views.SQLTimestamp, views.SQLTimestampTZ:
			ts, ok := got.logical.(schema.TimestampLogicalType)
			if got.physical != apq.Types.Int64 || !ok || ts.TimeUnit() != schema.TimeUnitMicros || ts.IsAdjustedToUTC() != (c.SQLType == views.SQLTimestampTZ) {
				t.Errorf("%s.%s: %v %v, want INT64 TIMESTAMP(MICROS, isAdjustedToUTC=%v)", v.Name, c.Name, got.physical, got.logical, c.SQLType == views.SQLTimestampTZ)
			}
			continue
		}
		switch c.Kind {
		case views.KindInteger:
			if got.physical != apq.Types.Int64 {
				t.Errorf("%s.%s: %v, want INT64", v.Name, c.Name, got.physical)
			}
		case views.KindDecimal:
			if got.physical != apq.Types.Double {
				t.Errorf("%s.%s: %v, want DOUBLE", v.Name, c.Name, got.physical)
			}
		case views.KindBoolean:
			if got.physical != apq.Types.Boolean {
				t.Errorf("%s.%s: %v, want BOOLEAN", v.Name, c.Name, got.physical)
			}
		default:
			if _, ok := got.logical.(schema.StringLogicalType); got.physical != apq.Types.ByteArray || !ok {
				t.Errorf("%s.%s: %v %v, want BYTE_ARRAY STRING", v.Name, c.Name, got.physical, got.logical)
			}
		}
	}
}

func compareRows(t *testing.T, name string, got, want [][]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows read back, want %d", name, len(got), len(want))
	}
	bad := 0
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			bad++
			if bad <= 3 {
				t.Errorf("%s: row %d\n got %v\nwant %v", name, i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d rows differ", name, bad, len(want))
	}
}

func TestReadBackAllKinds(t *testing.T) {
	v, err := views.Parse([]byte(`{"name":"kinds","resource":"Observation","select":[{"column":[
	 {"name":"id","path":"getResourceKey()","type":"id"},
	 {"name":"status","path":"status","type":"code"},
	 {"name":"v","path":"value.ofType(Quantity).value","type":"decimal"},
	 {"name":"n","path":"component.count()","type":"integer"},
	 {"name":"has_note","path":"note.exists()","type":"boolean"},
	 {"name":"eff","path":"effective.ofType(dateTime)","type":"dateTime"},
	 {"name":"issued","path":"issued","type":"instant"},
	 {"name":"codes","path":"code.coding.code","type":"code","collection":true},
	 {"name":"comp_values","path":"component.value.ofType(Quantity).value","type":"decimal","collection":true},
	 {"name":"coding","path":"code.coding.first()","type":"Coding"},
	 {"name":"untyped","path":"code.text"}]}]}`), "kinds")
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8480-6"},{"code":"x"}],"text":"Ünïcødé, \"quoted\"\nline"},"effectiveDateTime":"2020-02","issued":"2020-02-03T04:05:06.789+02:00","valueQuantity":{"value":-12.50,"unit":"mg"},"note":[{"text":"n"}]}`,
		`{"resourceType":"Observation","id":"o2","status":"amended","code":{"text":""},"component":[{"code":{"text":"a"},"valueQuantity":{"value":1e3}},{"code":{"text":"b"},"valueQuantity":{"value":0.1}}]}`,
		`{"resourceType":"Observation","id":"o3","status":"final","code":{"coding":[{"code":"y"}]},"issued":"1999-12-31T23:59:59Z"}`,
	}
	for _, comp := range []string{"snappy", "zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kinds.parquet")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := vpq.NewWriter(f, v, vpq.Options{Compression: comp, RowGroupRows: 2})
			if err != nil {
				t.Fatal(err)
			}
			r := v.NewRunner()
			var want [][]any
			for i := 0; i < 5; i++ { // 15 rows, 8 row groups
				for _, d := range docs {
					err := r.ProcessJSON([]byte(d), func(row []views.Value) error {
						want = append(want, expected(v, row))
						return w.Write(row)
					})
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			cols, got := readParquet(t, path)
			checkTypes(t, v, cols)
			compareRows(t, "kinds", got, want)
			// Spot checks against literal values, independent of expected().
			if got[0][2] != -12.5 || got[1][3] != int64(2) || got[0][4] != true || got[1][4] != false ||
				got[0][6] != "2020-02-03T04:05:06.789+02:00" || got[1][6] != nil ||
				!reflect.DeepEqual(got[1][8], []any{1000.0, 0.1}) || !reflect.DeepEqual(got[1][7], []any{}) ||
				got[0][10] != "Ünïcødé, \"quoted\"\nline" || got[0][9] != `{"system":"http://loinc.org","code":"8480-6"}` {
				t.Fatalf("spot check: %v / %v", got[0], got[1])
			}
		})
	}
}

// TestReadBackTemporal writes columns tagged ansi/type DATE, TIMESTAMP and
// TIMESTAMP WITH TIME ZONE and checks their Parquet types and values (days
// and microseconds since the epoch, in UTC for the instant) against
// literals; a partial date in such a column gives no row.
func TestReadBackTemporal(t *testing.T) {
	v, err := views.Parse([]byte(`{"name":"temporal","resource":"Patient","select":[{"column":[
	 {"name":"id","path":"id","type":"id"},
	 {"name":"birth","path":"birthDate","type":"date","tag":[{"name":"ansi/type","value":"DATE"}]},
	 {"name":"died_local","path":"deceased.ofType(dateTime)","type":"dateTime","tag":[{"name":"ansi/type","value":"timestamp"}]},
	 {"name":"died_utc","path":"deceased.ofType(dateTime)","type":"dateTime","tag":[{"name":"ansi/type","value":"TIMESTAMP WITH TIME ZONE"}]},
	 {"name":"died_day","path":"deceased.ofType(dateTime)","type":"dateTime","tag":[{"name":"ansi/type","value":"DATE"}]},
	 {"name":"updated","path":"meta.lastUpdated","type":"instant","tag":[{"name":"ansi/type","value":"TIMESTAMPTZ"}]}]}]}`), "temporal")
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{
		`{"resourceType":"Patient","id":"a","birthDate":"1970-01-02","deceasedDateTime":"2020-02-03T04:05:06.789+02:00","meta":{"lastUpdated":"2021-01-01T00:00:00Z"}}`,
		`{"resourceType":"Patient","id":"b","birthDate":"1969-12-31"}`,
		`{"resourceType":"Patient","id":"c","birthDate":"1965"}`, // partial: no row
	}
	path := filepath.Join(t.TempDir(), "temporal.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := vpq.NewWriter(f, v, vpq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := v.NewRunner()
	var want [][]any
	var errs []error
	for _, d := range docs {
		err := r.ProcessJSON([]byte(d), func(row []views.Value) error {
			want = append(want, expected(v, row))
			return w.Write(row)
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "column birth") || strings.Contains(errs[0].Error(), "1965") {
		t.Fatalf("errors %v, want one for the partial birth date, naming the column and not the value", errs)
	}
	cols, got := readParquet(t, path)
	checkTypes(t, v, cols)
	compareRows(t, "temporal", got, want)
	// 2020-02-03T04:05:06.789+02:00 is 2020-02-03T02:05:06.789Z.
	utc := time.Date(2020, 2, 3, 2, 5, 6, 789e6, time.UTC).UnixMicro()
	local := time.Date(2020, 2, 3, 4, 5, 6, 789e6, time.UTC).UnixMicro()
	lit := [][]any{
		{"a", int32(1), local, utc, int32(18295), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()},
		{"b", int32(-1), nil, nil, nil, nil},
	}
	compareRows(t, "temporal literals", got, lit)
}

// TestReadBackSyntheaBuiltins writes every built-in view over synthea-100
// (parsed with one reused parser, as the pipeline does) and reads the files
// back.
func TestReadBackSyntheaBuiltins(t *testing.T) {
	dir := sharedData(t, "synthea-100")
	vs, err := views.Builtins()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			src := filepath.Join(dir, v.Resource+".000.ndjson.gz")
			path := filepath.Join(t.TempDir(), v.Name+".parquet")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := vpq.NewWriter(f, v, vpq.Options{RowGroupRows: 5000})
			if err != nil {
				t.Fatal(err)
			}
			r := v.NewRunner()
			var want [][]any
			eachLine(t, src, func(line []byte) {
				err := r.ProcessJSON(line, func(row []views.Value) error {
					want = append(want, expected(v, row))
					return w.Write(row)
				})
				if err != nil {
					t.Fatal(err)
				}
			})
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			cols, got := readParquet(t, path)
			checkTypes(t, v, cols)
			compareRows(t, v.Name, got, want)
			if len(want) == 0 {
				t.Fatalf("%s: no rows", v.Name)
			}
			t.Logf("%s: %d rows read back identical", v.Name, len(want))
		})
	}
}

func sharedData(t *testing.T, name string) string {
	for _, d := range []string{os.Getenv("FHIRDEID_SHARED"), "../../../../shared", "../../../shared"} {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "data", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("shared data %s not found in ../shared or $FHIRDEID_SHARED: skipping", name)
	return ""
}

func eachLine(t *testing.T, path string, fn func([]byte)) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(gz)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			fn(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", path, err))
	}
}
