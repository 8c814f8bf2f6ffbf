package risk

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

func patient(year, gender string) string {
	return fmt.Sprintf(`{"resourceType":"Patient","birthDate":%q,"gender":%q}`, year, gender)
}

// population adds count patients of each (year, gender).
func population(t *testing.T, a *Analyzer, groups map[[2]string]int) {
	t.Helper()
	var b strings.Builder
	for g, n := range groups {
		for range n {
			b.WriteString(patient(g[0], g[1]) + "\n")
			b.WriteString(`{"resourceType":"Observation","status":"final"}` + "\n")
		}
	}
	if err := a.AddNDJSON(strings.NewReader(b.String()), 0); err != nil {
		t.Fatal(err)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestHandBuilt: 12 patients in 5 classes over (birth year, gender):
// (1980,F)×5, (1980,M)×3, (1990,F)×2, (1990,M)×1, (2000,O)×1.
func TestHandBuilt(t *testing.T) {
	a, err := New([]string{"birthYear", "gender"})
	if err != nil {
		t.Fatal(err)
	}
	population(t, a, map[[2]string]int{{"1980-05-01", "female"}: 5, {"1980", "male"}: 3, {"1990", "female"}: 2, {"1990", "male"}: 1, {"2000", "other"}: 1})
	r := a.Report(0, nil)
	// By hand: n = 12, 5 classes, sizes 5, 3, 2, 1, 1.
	if r.Records != 12 || r.Classes != 5 || r.MinK != 1 {
		t.Fatalf("records %d classes %d minK %d", r.Records, r.Classes, r.MinK)
	}
	hist := map[string][2]int64{}
	for _, b := range r.Histogram {
		hist[b.Size] = [2]int64{b.Classes, b.Records}
	}
	want := map[string][2]int64{"1": {2, 2}, "2": {1, 2}, "3": {1, 3}, "4": {0, 0}, "5-10": {1, 5}, "11-19": {}, "20-49": {}, "50-99": {}, "100+": {}}
	if fmt.Sprint(hist) != fmt.Sprint(want) {
		t.Errorf("histogram %v, want %v", hist, want)
	}
	// Below 5: 3+2+1+1 = 7 of 12; below 11: all.
	check := func(name string, got, want float64) {
		t.Helper()
		if !near(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("shareBelow5", r.BelowK5, 7.0/12)
	check("shareBelow11", r.BelowK11, 1)
	// Prosecutor, threshold 0.2: records in classes with 1/f > 0.2 (f < 5)
	// = 7/12; highest = 1/1; success rate = 5 classes / 12.
	check("prosecutor.recordsAtRisk", r.Prosecutor.RecordsAtRisk, 7.0/12)
	check("prosecutor.highestRisk", r.Prosecutor.HighestRisk, 1)
	check("prosecutor.successRate", r.Prosecutor.SuccessRate, 5.0/12)
	// Without a population the journalist's population is the sample:
	// the same; success = max(5/12, (1+1+1+1+1)/12).
	if r.Journalist != r.Prosecutor {
		t.Errorf("journalist %+v, want the prosecutor's %+v", r.Journalist, r.Prosecutor)
	}
	check("marketer.successRate", r.Marketer.SuccessRate, 5.0/12)

	// Against a population of 28: (1980,F)×10, (1980,M)×6, (1990,F)×4,
	// (1990,M)×2, (2000,O)×1, (1970,M)×5.
	pop, _ := New([]string{"birthYear", "gender"})
	population(t, pop, map[[2]string]int{{"1980", "female"}: 10, {"1980", "male"}: 6, {"1990", "female"}: 4, {"1990", "male"}: 2, {"2000", "other"}: 1, {"1970", "male"}: 5})
	r = a.Report(0, pop)
	if r.Population != 28 {
		t.Errorf("population %d", r.Population)
	}
	// The prosecutor does not change.
	check("prosecutor.recordsAtRisk", r.Prosecutor.RecordsAtRisk, 7.0/12)
	// Journalist: F = 10, 6, 4, 2, 1 for f = 5, 3, 2, 1, 1. At risk
	// (F < 5): 2+1+1 = 4 of 12; highest 1/1; ΣF = 23, Σf/F = 0.5+0.5+0.5+
	// 0.5+1 = 3; success = max(5/23, 3/12) = 0.25.
	check("journalist.recordsAtRisk", r.Journalist.RecordsAtRisk, 4.0/12)
	check("journalist.highestRisk", r.Journalist.HighestRisk, 1)
	check("journalist.successRate", r.Journalist.SuccessRate, 0.25)
	check("marketer.successRate", r.Marketer.SuccessRate, 3.0/12)

	// A threshold of 0.5 (classes below 2): 2 records at risk.
	r = a.Report(0.5, nil)
	check("prosecutor.recordsAtRisk@0.5", r.Prosecutor.RecordsAtRisk, 2.0/12)
}

func TestExtractors(t *testing.T) {
	p := `{"resourceType":"Patient","birthDate":"1965-01-13","gender":"female","deceasedDateTime":"2020",
	 "address":[{"postalCode":"01027","state":"MA"}],"maritalStatus":{"coding":[{"code":"M"},{"code":"A"}]},
	 "extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[
	   {"url":"ombCategory","valueCoding":{"code":"2106-3"}},{"url":"ombCategory","valueCoding":{"code":"1002-5"}},{"url":"text","valueString":"Mixed"}]},
	  {"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity","extension":[{"url":"text","valueString":"Not Hispanic"}]}]}`
	a, err := New([]string{"birthDate", "birthYear", "gender", "zip3", "state", "deceased", "race", "ethnicity", "maritalStatus.coding.code"})
	if err != nil {
		t.Fatal(err)
	}
	a.Add([]byte(strings.ReplaceAll(p, "\n", "")))
	a.Add([]byte(`{"resourceType":"Patient","address":[{"state":"MA"}],"deceasedBoolean":true}`))
	a.Add([]byte(`{"resourceType":"Patient"`))
	var keys []string
	for k := range a.classes {
		keys = append(keys, strings.ReplaceAll(k, "\x00", ","))
	}
	want := map[string]bool{
		"1965-01-13,1965,female,010,MA,true,1002-5+2106-3,Not Hispanic,A|M": true,
		",,,state:MA,MA,true,,,": true,
	}
	if len(keys) != 2 || !want[keys[0]] || !want[keys[1]] {
		t.Errorf("classes %q", keys)
	}
	r := a.Report(0, nil)
	if r.Invalid != 1 || r.Records != 2 {
		t.Errorf("records %d invalid %d", r.Records, r.Invalid)
	}
	j, _ := json.Marshal(r)
	for _, v := range []string{"1965", "010", "2106", "Hispanic"} {
		if strings.Contains(string(j), v) {
			t.Errorf("report holds a value: %s", j)
		}
	}
	if _, err := New([]string{"name[0]"}); err == nil {
		t.Error("a path with brackets was accepted")
	}
}

// TestBoundedByClasses: a million patients in 3 classes keep 3 keys.
func TestBoundedByClasses(t *testing.T) {
	a, _ := New(nil)
	p := [][]byte{[]byte(patient("1980", "female")), []byte(patient("1980", "male")), []byte(patient("1990", "male"))}
	for i := range 300000 {
		a.Add(p[i%3])
	}
	if len(a.classes) != 3 || a.Records() != 300000 {
		t.Fatalf("%d classes for %d records", len(a.classes), a.Records())
	}
	if r := a.Report(0, nil); r.MinK != 100000 || r.Histogram[8].Classes != 3 {
		t.Errorf("minK %d histogram %+v", r.MinK, r.Histogram)
	}
}
