package bulktest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// Synthetic returns a deterministic synthetic population of n patients,
// each with Encounters, Conditions and Observations that reference the
// patient by subject, plus Organizations and a Group "all" of every
// patient. Every value is invented; lastUpdated spreads over 2024–2026.
func Synthetic(n int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var out [][]byte
	add := func(v map[string]any) {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	lu := func() map[string]any {
		return map[string]any{"lastUpdated": base.Add(time.Duration(rng.IntN(3*365*24)) * time.Hour).Format(time.RFC3339)}
	}
	given := []string{"Ada", "Brook", "Cyril", "Dana", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun"}
	family := []string{"Arden", "Birch", "Cole", "Dale", "Ebb", "Frost", "Grove", "Heath", "Isle", "Jett"}
	for o := 0; o < 3; o++ {
		add(map[string]any{"resourceType": "Organization", "id": fmt.Sprintf("org%d", o), "meta": lu(),
			"name": fmt.Sprintf("Synthetic Clinic %d", o)})
	}
	members := make([]map[string]any, 0, n)
	for p := 0; p < n; p++ {
		pid := fmt.Sprintf("pat%05d", p)
		members = append(members, map[string]any{"entity": map[string]string{"reference": "Patient/" + pid}})
		birth := time.Date(1930+rng.IntN(90), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC)
		add(map[string]any{"resourceType": "Patient", "id": pid, "meta": lu(),
			"identifier": []map[string]any{{"system": "urn:example:mrn", "value": fmt.Sprintf("MRN-%07d", rng.IntN(10000000))}},
			"name":       []map[string]any{{"family": family[rng.IntN(len(family))], "given": []string{given[rng.IntN(len(given))]}}},
			"gender":     []string{"female", "male"}[rng.IntN(2)], "birthDate": birth.Format("2006-01-02"),
			"address": []map[string]any{{"line": []string{fmt.Sprintf("%d Synthetic St", 1+rng.IntN(999))},
				"city": "Springfield", "postalCode": fmt.Sprintf("%05d", rng.IntN(100000))}},
			"managingOrganization": map[string]string{"reference": fmt.Sprintf("Organization/org%d", rng.IntN(3))}})
		for e := 0; e < 1+rng.IntN(4); e++ {
			eid := fmt.Sprintf("enc%05d-%d", p, e)
			start := birth.Add(time.Duration(rng.IntN(60*365*24)) * time.Hour)
			add(map[string]any{"resourceType": "Encounter", "id": eid, "meta": lu(), "status": "finished",
				"class":   map[string]string{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
				"subject": map[string]string{"reference": "Patient/" + pid},
				"period":  map[string]string{"start": start.Format(time.RFC3339), "end": start.Add(time.Hour).Format(time.RFC3339)}})
			for o := 0; o < 2+rng.IntN(5); o++ {
				add(map[string]any{"resourceType": "Observation", "id": fmt.Sprintf("obs%05d-%d-%d", p, e, o), "meta": lu(),
					"status":            "final",
					"code":              map[string]any{"coding": []map[string]string{{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}}},
					"subject":           map[string]string{"reference": "Patient/" + pid},
					"encounter":         map[string]string{"reference": "Encounter/" + eid},
					"effectiveDateTime": start.Format(time.RFC3339),
					"valueQuantity":     map[string]any{"value": 50 + rng.IntN(70), "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
			}
		}
		if rng.IntN(2) == 0 {
			add(map[string]any{"resourceType": "Condition", "id": fmt.Sprintf("cond%05d", p), "meta": lu(),
				"code":    map[string]any{"coding": []map[string]string{{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}}},
				"subject": map[string]string{"reference": "Patient/" + pid}})
		}
	}
	add(map[string]any{"resourceType": "Group", "id": "all", "meta": lu(), "type": "person", "actual": true, "member": members})
	return out
}
