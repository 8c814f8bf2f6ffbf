package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const evalPatient = `{"resourceType":"Patient","id":"p1","name":[{"use":"official","family":"Chalmers","given":["Peter","James"]}],"birthDate":"1974-12-25"}`

func TestEval(t *testing.T) {
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "p.json")
	if err := os.WriteFile(jsonFile, []byte(evalPatient), 0o600); err != nil {
		t.Fatal(err)
	}
	gzFile := filepath.Join(dir, "Patient.000.ndjson.gz")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(evalPatient + "\n" + `{"resourceType":"Patient","id":"p2"}` + "\n"))
	zw.Close()
	if err := os.WriteFile(gzFile, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		out, err string
	}{
		{"given", []string{"Patient.name.given", jsonFile}, "", 0,
			"Patient.name[0].given[0]  string  \"Peter\"\nPatient.name[0].given[1]  string  \"James\"\n", ""},
		{"ndjson.gz first line", []string{"id", gzFile}, "", 0, "Patient.id  id  \"p1\"\n", ""},
		{"stdin", []string{"birthDate + 1 day"}, evalPatient, 0, "-  date  1974-12-26\n", ""},
		{"stdin ndjson", []string{"id", "-"}, evalPatient + "\n" + evalPatient + "\n", 0, "Patient.id  id  \"p1\"\n", ""},
		{"complex", []string{"name.where(use = 'official').family.length()", jsonFile}, "", 0, "-  integer  8\n", ""},
		{"object", []string{"name", jsonFile}, "", 0,
			`Patient.name[0]  HumanName  {"use":"official","family":"Chalmers","given":["Peter","James"]}` + "\n", ""},
		{"nodesByType", []string{"nodesByType('date')", jsonFile}, "", 0, "Patient.birthDate  date  \"1974-12-25\"\n", ""},
		{"unknown element", []string{"Patient.nmae", jsonFile}, "", 1, "", "fhirdeid eval: fhirpath: 1:9: unknown element nmae on Patient\n"},
		{"syntax error", []string{"name.where(", jsonFile}, "", 1, "", "fhirdeid eval: fhirpath: 1:12: expected an expression, found end of expression\n"},
		{"stu3", []string{"--fhir-version", "STU3", "animal.species.text"}, `{"resourceType":"Patient","animal":{"species":{"text":"dog"}}}`, 0, "Patient.animal.species.text  string  \"dog\"\n", ""},
		{"stu3 element in r4", []string{"animal"}, `{"resourceType":"Patient","animal":{"species":{"text":"dog"}}}`, 1, "", ""},
		{"no args", nil, "", 2, "", "fhirdeid eval: expected EXPR and an optional FILE\n"},
		{"bad version", []string{"--fhir-version", "R9", "id", jsonFile}, "", 2, "", "fhirdeid eval: unknown FHIR version \"R9\" (want R4 or STU3)\n"},
		{"missing file", []string{"id", filepath.Join(dir, "nope.json")}, "", 1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			e := &env{stdin: strings.NewReader(tt.stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
			code := run(context.Background(), e, append([]string{"eval"}, tt.args...))
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, errb.String())
			}
			if out.String() != tt.out {
				t.Errorf("stdout = %q, want %q", out.String(), tt.out)
			}
			if tt.err != "" && errb.String() != tt.err {
				t.Errorf("stderr = %q, want %q", errb.String(), tt.err)
			}
		})
	}
}
