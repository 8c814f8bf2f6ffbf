package synth_test

import (
	"bytes"
	"testing"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/internal/synth"
	"fhirdeid/jsontree"
)

func TestGenerateIsValidAndDeterministic(t *testing.T) {
	p := synth.Generate(synth.Options{Patients: 20, Seed: 7})
	q := synth.Generate(synth.Options{Patients: 20, Seed: 7})
	m := model.Get(model.R4)
	for _, typ := range p.Types() {
		for i, r := range p.Resources[typ] {
			if !bytes.Equal(r, q.Resources[typ][i]) {
				t.Fatalf("%s[%d] differs between two runs with the same seed", typ, i)
			}
			root, err := jsontree.Parse(r)
			if err != nil {
				t.Fatalf("%s[%d]: %v", typ, i, err)
			}
			if err := typed.Annotate(root, m); err != nil {
				t.Fatalf("%s[%d]: %v", typ, i, err)
			}
		}
	}
	if n := len(p.Resources["Patient"]); n != 20 {
		t.Errorf("%d patients, want 20", n)
	}
	for _, typ := range []string{"Encounter", "Observation", "DocumentReference", "Practitioner", "Organization"} {
		if len(p.Resources[typ]) == 0 {
			t.Errorf("no %s generated", typ)
		}
	}
	// Each patient plants 11 distinct identifiers (birth dates may repeat).
	if len(p.Identifiers) < 20*10 {
		t.Errorf("only %d identifiers planted", len(p.Identifiers))
	}
	r := synth.Generate(synth.Options{Patients: 20, Seed: 8})
	if bytes.Equal(p.Resources["Patient"][0], r.Resources["Patient"][0]) {
		t.Error("different seeds gave the same patient")
	}
}

func TestLeakChecker(t *testing.T) {
	p := synth.Generate(synth.Options{Patients: 5})
	c := synth.NewLeakChecker(p.Identifiers)
	for _, typ := range p.Types() {
		for _, r := range p.Resources[typ] {
			c.CheckLine(r)
		}
	}
	// The raw data holds every identifier.
	if c.Found() != len(p.Identifiers) {
		t.Errorf("found %d of %d identifiers in the raw data", c.Found(), len(p.Identifiers))
	}
	clean := synth.NewLeakChecker(p.Identifiers)
	clean.CheckLine([]byte(`{"resourceType":"Patient","name":[{"family":"Redacted"}],"birthDate":"1970"}`))
	if clean.Found() != 0 {
		t.Errorf("found %v in clean data", clean.FoundIdentifiers())
	}
	// Identifiers hidden inside base64 content are found.
	d := synth.NewLeakChecker([]string{"Zebulon Quigley123"})
	d.CheckLine([]byte(`{"data":"Tm90ZSBmb3IgWmVidWxvbiBRdWlnbGV5MTIzLg=="}`))
	if d.Found() != 1 {
		t.Error("identifier inside base64 not found")
	}
	// A word that merely contains an identifier inside another word is not a
	// hit; one after punctuation is.
	e := synth.NewLeakChecker([]string{"MRN12345678"})
	e.CheckLine([]byte(`{"a":"XMRN12345678"}`))
	if e.Found() != 0 {
		t.Error("identifier inside a longer word counted")
	}
	e.CheckLine([]byte(`{"a":"MRN123456789"}`))
	if e.Found() != 0 {
		t.Error("identifier that is the start of a longer word counted")
	}
	e.CheckLine([]byte(`{"a":"(MRN12345678)"}`))
	if e.Found() != 1 {
		t.Error("identifier after punctuation missed")
	}
	// A hex hash is valid base64, but its bytes are not text: not scanned.
	f := synth.NewLeakChecker([]string{"Gus"})
	f.CheckLine([]byte(`{"id":"` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `"}`))
	if f.Found() != 0 {
		t.Error("noise decoded from a hex string counted")
	}
}
