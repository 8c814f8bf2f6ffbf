// Package synth generates a synthetic patient population as FHIR R4 resources,
// rich in the identifiers that de-identification must remove: names,
// addresses, phone numbers, e-mail addresses, SSN, MRN, driver's licence and
// passport numbers, birth dates, narratives and free-text notes.
//
// Everything is made up from small built-in word lists and a seeded random
// generator: the same Options give byte-identical resources. The demo serves
// the population through the in-repo Bulk Data server, and tests use the
// identifiers it reports to check that none survives de-identification.
package synth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Options control the population.
type Options struct {
	// Patients is the number of patients (default 200).
	Patients int
	// Seed makes the population reproducible (default 1).
	Seed uint64
	// LastUpdated is the meta.lastUpdated of every resource (default
	// 2026-01-01T00:00:00Z).
	LastUpdated time.Time
}

// Population is a generated data set.
type Population struct {
	// Resources maps a resource type to its resources, one compact JSON
	// document each, in generation order.
	Resources map[string][][]byte
	// Identifiers are the identifying strings planted in the data (full
	// names, name parts, address lines, phone numbers, e-mail addresses,
	// SSN/MRN/licence/passport numbers, full birth dates). None of them may
	// appear in a de-identified copy.
	Identifiers []string
}

// Types returns the resource types of the population, sorted.
func (p *Population) Types() []string {
	types := make([]string, 0, len(p.Resources))
	for t := range p.Resources {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// Count returns the number of resources.
func (p *Population) Count() int {
	n := 0
	for _, rs := range p.Resources {
		n += len(rs)
	}
	return n
}

var (
	givenNames = []string{"Amelia", "Bartholomew", "Cordelia", "Desmond", "Evangeline", "Fitzgerald", "Genevieve", "Horatio",
		"Isadora", "Jebediah", "Katarina", "Leopold", "Marguerite", "Nathaniel", "Ophelia", "Percival", "Quintessa",
		"Rosalind", "Sebastian", "Theodora", "Ulysses", "Valentina", "Wilhelmina", "Xavier", "Yolanda", "Zebulon"}
	familyNames = []string{"Ashcombe", "Blackwood", "Carrington", "Davenport", "Elsworth", "Fairweather", "Goldsmith",
		"Hawthorne", "Ingleby", "Jardine", "Kingsley", "Lockhart", "Montague", "Northcott", "Oakhurst", "Pemberton",
		"Quigley", "Ravensworth", "Stanhope", "Thistlewood", "Underhill", "Vandermeer", "Whitlock", "Yarborough", "Zellweger"}
	streets = []string{"Juniper Hollow", "Marigold Crescent", "Quarry Ridge", "Tamarack Lane", "Wildflower Terrace",
		"Beacon Hill Road", "Copperfield Way", "Harrow Court", "Larkspur Drive", "Sable Point Avenue"}
	cities = []struct{ city, state, zip string }{
		{"Springfield", "MA", "01103"}, {"Worcester", "MA", "01608"}, {"Lowell", "MA", "01852"},
		{"Cambridge", "MA", "02139"}, {"Quincy", "MA", "02169"}, {"Barre", "VT", "05641"},
		{"Nashua", "NH", "03060"}, {"Providence", "RI", "02903"}, {"Hartford", "CT", "06103"},
		{"Mills", "WY", "82644"}, {"Glendive", "MT", "59330"},
	}
	conditions = []struct{ code, display string }{
		{"44054006", "Diabetes mellitus type 2"}, {"38341003", "Hypertensive disorder"},
		{"195662009", "Acute viral pharyngitis"}, {"10509002", "Acute bronchitis"},
		{"40055000", "Chronic sinusitis"}, {"55822004", "Hyperlipidemia"}, {"230690007", "Cerebrovascular accident"},
	}
	medications = []struct{ code, display string }{
		{"860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"},
		{"314076", "lisinopril 10 MG Oral Tablet"}, {"308136", "amLODIPine 2.5 MG Oral Tablet"},
		{"197361", "Amlodipine 5 MG Oral Tablet"}, {"313782", "Acetaminophen 325 MG Oral Tablet"},
	}
	vitals = []struct {
		code, display, unit string
		lo, hi              float64
	}{
		{"8302-2", "Body Height", "cm", 150, 195}, {"29463-7", "Body Weight", "kg", 45, 120},
		{"8867-4", "Heart rate", "/min", 55, 110}, {"8310-5", "Body temperature", "Cel", 36.1, 38.4},
	}
)

type gen struct {
	r    *rand.Rand
	opts Options
	pop  *Population
	ids  map[string]bool
}

// Generate builds a population.
func Generate(opts Options) *Population {
	if opts.Patients <= 0 {
		opts.Patients = 200
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.LastUpdated.IsZero() {
		opts.LastUpdated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	g := &gen{r: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)), opts: opts,
		pop: &Population{Resources: map[string][][]byte{}}, ids: map[string]bool{}}
	orgs := g.organizations()
	pracs := g.practitioners(orgs)
	for i := 0; i < opts.Patients; i++ {
		g.patient(i, orgs, pracs)
	}
	for id := range g.ids {
		g.pop.Identifiers = append(g.pop.Identifiers, id)
	}
	sort.Strings(g.pop.Identifiers)
	return g.pop
}

type obj = map[string]any

func (g *gen) emit(typ string, r obj) {
	r["resourceType"] = typ
	r["meta"] = obj{"lastUpdated": g.opts.LastUpdated.Format(time.RFC3339)}
	data, err := json.Marshal(r)
	if err != nil {
		panic(err) // only maps, strings and numbers: cannot fail
	}
	g.pop.Resources[typ] = append(g.pop.Resources[typ], data)
}

func (g *gen) plant(ids ...string) {
	for _, id := range ids {
		g.ids[id] = true
	}
}

func (g *gen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *gen) digits(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(byte('0' + g.r.IntN(10)))
	}
	return b.String()
}

func (g *gen) uuid() string {
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", g.r.Uint32(), g.r.IntN(1<<16), g.r.IntN(1<<12), g.r.IntN(1<<12), g.r.Uint64()&(1<<48-1))
}

type org struct{ id, name string }

func (g *gen) organizations() []org {
	names := []string{"Juniper Valley Medical Center", "Harrow Court Family Practice", "Sable Point Clinic"}
	var orgs []org
	for _, n := range names {
		id := g.uuid()
		c := cities[g.r.IntN(len(cities))]
		g.emit("Organization", obj{"id": id, "active": true, "name": n,
			"telecom": []obj{{"system": "phone", "value": g.phone()}},
			"address": []obj{{"line": []string{g.street()}, "city": c.city, "state": c.state, "postalCode": c.zip, "country": "US"}}})
		orgs = append(orgs, org{id, n})
	}
	return orgs
}

type prac struct{ id, name string }

func (g *gen) practitioners(orgs []org) []prac {
	var ps []prac
	for i := 0; i < 8; i++ {
		id := g.uuid()
		given, family := g.pick(givenNames), g.pick(familyNames)
		npi := "9" + g.digits(9)
		g.emit("Practitioner", obj{"id": id, "active": true,
			"identifier": []obj{{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}},
			"name":       []obj{{"family": family, "given": []string{given}, "prefix": []string{"Dr."}}},
			"telecom":    []obj{{"system": "email", "value": strings.ToLower(given+"."+family) + "@example.org", "use": "work"}}})
		ps = append(ps, prac{id, "Dr. " + given + " " + family})
	}
	return ps
}

func (g *gen) phone() string {
	return fmt.Sprintf("(%03d) %03d-%04d", 200+g.r.IntN(700), 200+g.r.IntN(700), g.r.IntN(10000))
}

func (g *gen) street() string { return fmt.Sprintf("%d %s", 10+g.r.IntN(9000), g.pick(streets)) }

func (g *gen) date(from, to int) time.Time {
	start := time.Date(from, 1, 1, 0, 0, 0, 0, time.UTC)
	days := int(time.Date(to, 1, 1, 0, 0, 0, 0, time.UTC).Sub(start).Hours() / 24)
	return start.AddDate(0, 0, g.r.IntN(days))
}

func (g *gen) patient(i int, orgs []org, pracs []prac) {
	id := g.uuid()
	given, middle, family := g.pick(givenNames), g.pick(givenNames), g.pick(familyNames)
	// A numeric suffix makes every full name unique, so a leak check can
	// tell one patient from another.
	family = fmt.Sprintf("%s%d", family, 100+i)
	full := given + " " + family
	// Some patients are over 89: their age must be aggregated too.
	birth := g.date(1925, 2024)
	c := cities[g.r.IntN(len(cities))]
	line := g.street()
	phone, mobile := g.phone(), g.phone()
	email := strings.ToLower(given) + "." + strings.ToLower(family) + "@mail.example.com"
	ssn := fmt.Sprintf("%03d-%02d-%04d", 100+g.r.IntN(600), 10+g.r.IntN(89), 1000+g.r.IntN(9000))
	mrn := "MRN" + g.digits(8)
	dl := "S" + g.digits(8)
	passport := "X" + g.digits(8)
	g.plant(full, family, line, phone, mobile, email, ssn, mrn, dl, passport, birth.Format("2006-01-02"))
	gender := []string{"female", "male"}[g.r.IntN(2)]
	org := orgs[g.r.IntN(len(orgs))]
	gp := pracs[g.r.IntN(len(pracs))]
	div := fmt.Sprintf(`<div xmlns="http://www.w3.org/1999/xhtml">%s %s, born %s, MRN %s, lives at %s, %s.</div>`,
		given, family, birth.Format("2006-01-02"), mrn, line, c.city)
	pat := obj{
		"id":   id,
		"text": obj{"status": "generated", "div": div},
		"extension": []obj{{"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
			"valueString": g.pick(familyNames) + fmt.Sprint(i)}},
		"identifier": []obj{
			{"type": obj{"coding": []obj{{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}}},
				"system": "http://hospital.example.org/mrn", "value": mrn},
			{"type": obj{"coding": []obj{{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}}},
				"system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn},
			{"type": obj{"coding": []obj{{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}}},
				"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": dl},
			{"type": obj{"coding": []obj{{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PPN"}}},
				"system": "http://hl7.org/fhir/sid/passport-USA", "value": passport},
		},
		"name": []obj{
			{"use": "official", "family": family, "given": []string{given, middle}, "prefix": []string{[]string{"Mr.", "Ms.", "Mx."}[g.r.IntN(3)]}},
			{"use": "nickname", "given": []string{given[:3] + "ie"}},
		},
		"telecom": []obj{
			{"system": "phone", "value": phone, "use": "home"},
			{"system": "phone", "value": mobile, "use": "mobile"},
			{"system": "email", "value": email},
		},
		"gender":    gender,
		"birthDate": birth.Format("2006-01-02"),
		"address": []obj{{"use": "home", "line": []string{line}, "city": c.city, "state": c.state,
			"postalCode": c.zip, "country": "US"}},
		"maritalStatus":        obj{"text": []string{"Married", "Never Married", "Divorced"}[g.r.IntN(3)]},
		"generalPractitioner":  []obj{{"reference": "Practitioner/" + gp.id, "display": gp.name}},
		"managingOrganization": obj{"reference": "Organization/" + org.id, "display": org.name},
	}
	if g.r.IntN(10) == 0 {
		pat["deceasedDateTime"] = birth.AddDate(70+g.r.IntN(20), 0, 0).Format(time.RFC3339)
	}
	g.emit("Patient", pat)

	subject := obj{"reference": "Patient/" + id, "display": full}
	for e := 0; e < 2+g.r.IntN(3); e++ {
		start := g.date(2015, 2026).Add(time.Duration(8+g.r.IntN(9)) * time.Hour)
		encID := g.uuid()
		g.emit("Encounter", obj{"id": encID, "status": "finished",
			"class":           obj{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
			"type":            []obj{{"text": "General examination"}},
			"subject":         subject,
			"participant":     []obj{{"individual": obj{"reference": "Practitioner/" + gp.id, "display": gp.name}}},
			"period":          obj{"start": start.Format(time.RFC3339), "end": start.Add(30 * time.Minute).Format(time.RFC3339)},
			"serviceProvider": obj{"reference": "Organization/" + org.id, "display": org.name}})
		enc := obj{"reference": "Encounter/" + encID}
		for _, v := range vitals {
			val := v.lo + g.r.Float64()*(v.hi-v.lo)
			g.emit("Observation", obj{"id": g.uuid(), "status": "final",
				"category": []obj{{"coding": []obj{{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}}},
				"code":     obj{"coding": []obj{{"system": "http://loinc.org", "code": v.code, "display": v.display}}, "text": v.display},
				"subject":  subject, "encounter": enc,
				"effectiveDateTime": start.Format(time.RFC3339),
				"issued":            start.Add(time.Hour).Format("2006-01-02T15:04:05.000Z07:00"),
				"valueQuantity":     obj{"value": json.Number(fmt.Sprintf("%.1f", val)), "unit": v.unit, "system": "http://unitsofmeasure.org", "code": v.unit}})
		}
		if g.r.IntN(2) == 0 {
			cd := conditions[g.r.IntN(len(conditions))]
			g.emit("Condition", obj{"id": g.uuid(),
				"clinicalStatus": obj{"coding": []obj{{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}}},
				"code":           obj{"coding": []obj{{"system": "http://snomed.info/sct", "code": cd.code, "display": cd.display}}, "text": cd.display},
				"subject":        subject, "encounter": enc,
				"onsetDateTime": start.Format(time.RFC3339),
				"recordedDate":  start.Format(time.RFC3339),
				"note": []obj{{"authorString": gp.name, "time": start.Format(time.RFC3339),
					"text": fmt.Sprintf("%s (MRN %s) reports symptoms since last visit; call back at %s.", full, mrn, phone)}}})
		}
		if g.r.IntN(2) == 0 {
			md := medications[g.r.IntN(len(medications))]
			g.emit("MedicationRequest", obj{"id": g.uuid(), "status": "active", "intent": "order",
				"medicationCodeableConcept": obj{"coding": []obj{{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": md.code, "display": md.display}}, "text": md.display},
				"subject":                   subject, "encounter": enc,
				"authoredOn":        start.Format(time.RFC3339),
				"requester":         obj{"reference": "Practitioner/" + gp.id, "display": gp.name},
				"dosageInstruction": []obj{{"text": "Take one tablet by mouth daily"}}})
		}
		if e == 0 {
			note := fmt.Sprintf("Clinical note for %s, DOB %s, SSN %s. Address: %s, %s %s. Phone %s.",
				full, birth.Format("2006-01-02"), ssn, line, c.city, c.zip, phone)
			g.emit("DocumentReference", obj{"id": g.uuid(), "status": "current",
				"type":        obj{"coding": []obj{{"system": "http://loinc.org", "code": "34117-2", "display": "History and physical note"}}},
				"subject":     subject,
				"date":        start.Format("2006-01-02T15:04:05.000Z07:00"),
				"author":      []obj{{"reference": "Practitioner/" + gp.id, "display": gp.name}},
				"description": "History and physical for " + full,
				"content": []obj{{"attachment": obj{"contentType": "text/plain", "title": "Note about " + full,
					"data": base64.StdEncoding.EncodeToString([]byte(note))}}},
				"context": obj{"encounter": []obj{enc}, "period": obj{"start": start.Format(time.RFC3339)}}})
		}
	}
}
