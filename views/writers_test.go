package views

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

func TestNDJSONAndCSVWriters(t *testing.T) {
	v, err := Parse([]byte(`{"resource":"Patient","select":[{"column":[
	 {"name":"id","path":"id","type":"id"},
	 {"name":"given","path":"name.given","type":"string","collection":true},
	 {"name":"family","path":"name.family.first()","type":"string"},
	 {"name":"active","path":"active","type":"boolean"},
	 {"name":"n","path":"name.count()","type":"integer"}]}]}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	var nd, cs bytes.Buffer
	nw := NewNDJSONWriter(&nd, v)
	cw, err := NewCSVWriter(&cs, v)
	if err != nil {
		t.Fatal(err)
	}
	r := v.NewRunner()
	for _, res := range []string{
		`{"resourceType":"Patient","id":"a","active":true,"name":[{"family":"O\"Hara, Jr","given":["Ann","Line\nTwo"]}]}`,
		`{"resourceType":"Patient","id":"b"}`,
	} {
		err := r.ProcessJSON([]byte(res), func(row []Value) error {
			if err := nw.Write(row); err != nil {
				return err
			}
			return cw.Write(row)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	wantND := `{"id":"a","given":["Ann","Line\nTwo"],"family":"O\"Hara, Jr","active":true,"n":1}` + "\n" +
		`{"id":"b","given":[],"family":null,"active":null,"n":0}` + "\n"
	if nd.String() != wantND {
		t.Fatalf("NDJSON\n got %s\nwant %s", nd.String(), wantND)
	}
	for _, line := range strings.Split(strings.TrimSpace(nd.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("invalid JSON line %s", line)
		}
	}
	wantCSV := "id,given,family,active,n\r\n" +
		`a,"[""Ann"",""Line\nTwo""]","O""Hara, Jr",true,1` + "\r\n" +
		"b,[],,,0\r\n"
	if cs.String() != wantCSV {
		t.Fatalf("CSV\n got %q\nwant %q", cs.String(), wantCSV)
	}
	recs, err := csv.NewReader(strings.NewReader(cs.String())).ReadAll()
	if err != nil || len(recs) != 3 || recs[1][2] != `O"Hara, Jr` || recs[1][1] != `["Ann","Line\nTwo"]` {
		t.Fatalf("encoding/csv reads %q, %v", recs, err)
	}
}
