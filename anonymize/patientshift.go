package anonymize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/maphash"
	"strings"
	"time"

	"fhirdeid/fhir/typed"
	"fhirdeid/jsontree"
)

// Date shifting per patient (dateShiftScope "patient", a fhirdeid
// extension).
//
// Every resource in a patient's compartment (the Patient CompartmentDefinition
// of the configuration's release, package fhir/model) is shifted by the same
// whole number of days, derived from the dateShiftKey and the patient's id:
// the Patient resource by its own id, another resource by the first
// reference to a Patient among its compartment parameters' elements, in the
// definition's order (Observation.subject before Observation.performer). A
// contained resource in no compartment of its own takes its container's
// patient. Every other resource (Organization, Practitioner, Medication, a
// resource whose patient reference is not a literal "Patient/id") falls back
// to the resource scope: an offset keyed on the id of the root resource.
// Ids and references are read before any rule runs, so that a rule that
// hashes them first does not change the offset.
//
// The offset lies in [-range, -1] ∪ [1, range] (dateShiftRangeInDays,
// default 50): never 0, which would leave a patient's dates as they are. It
// is computed for each resource and written nowhere. A
// dateShiftFixedOffsetInDays, when set, is the offset of every resource.
//
// Unlike the other scopes, a shifted dateTime or instant keeps its time of
// day and its zone (only the calendar date moves), so intervals between any
// two of a patient's dates are exact. Dates without a day (a year, a
// year-month) cannot be shifted and fall back to redact, as in the other
// scopes. Ages over 89 are aggregated: a date that indicates an age over 89
// (before or after the shift) is removed, except Patient.birthDate, which
// becomes the year that makes the patient 90 ("today" minus 90 years).

// patientShiftState is the per-call state of patient scope.
type patientShiftState struct {
	// rootID is the root resource's id, read before any rule ran.
	rootID string
	// patient is the patient id of the resource being processed, and ok
	// whether it has one.
	patient string
	ok      bool
	// offset is the offset of the resource being processed.
	offset int
}

// enterPatientScope computes the offset of res before its rules run. It
// returns the previous state, which the caller restores after res's nested
// resources.
func (r *run) enterPatientScope(res *jsontree.Node) patientShiftState {
	prev := r.pshift
	if res == r.root {
		r.pshift.rootID = ""
		if id := res.Get("id"); id != nil && id.Kind == jsontree.String {
			r.pshift.rootID = id.Value()
		}
		prev.ok = false
	}
	id, ok := compartmentPatient(r.planOf(res), res)
	if !ok && res.Name() == "contained" && prev.ok {
		id, ok = prev.patient, true
	}
	p := &r.e.params
	switch {
	case p.HasFixedOffset:
		r.pshift.offset = p.DateShiftFixedOffsetInDays
	case ok:
		r.pshift.offset = r.patientOffset(id)
	default:
		r.pshift.offset = r.patientMemo().offset("resource", r.pshift.rootID, p)
	}
	r.pshift.patient, r.pshift.ok = id, ok
	return prev
}

// patientOffset returns the offset of the patient id. The offsets of
// recent patients are remembered from resource to resource (the run is
// pooled, and a pooled run serves the files being processed in turn): an
// export's files hold a patient's resources one after another, and the
// keyed hash cost as much as the rest of the date shifting.
func (r *run) patientOffset(id string) int {
	m := r.patientMemo()
	e := &m.entries[maphash.String(m.seed, id)%patientMemoSize]
	if e.set && e.id == id {
		return e.offset
	}
	o := m.offset("patient", id, &r.e.params)
	// The id may be text memory that the parser reuses: keep a copy.
	*e = patientMemoEntry{id: strings.Clone(id), offset: o, set: true}
	return o
}

// patientMemo returns the run's patientMemo, made on first use.
func (r *run) patientMemo() *patientMemo {
	if r.pmemo == nil {
		r.pmemo = &patientMemo{seed: maphash.MakeSeed()}
	}
	return r.pmemo
}

// patientMemo holds the offsets of the patients whose offsets a run
// computed last; it is direct-mapped. Its keyed HMAC, made once per run,
// computes the others (hmac.New per offset cost a microsecond: the key's
// two blocks and allocations).
type patientMemo struct {
	seed    maphash.Seed
	entries [patientMemoSize]patientMemoEntry
	mac     hash.Hash // HMAC-SHA256 keyed with the dateShiftKey (a run serves one engine)
	buf     []byte
}

const patientMemoSize = 1024

type patientMemoEntry struct {
	id     string
	offset int
	set    bool
}

// offset is PatientDateShiftOffset(p.DateShiftKey, scope, id,
// p.DateShiftRangeInDays) with the memo's keyed HMAC.
func (m *patientMemo) offset(scope, id string, p *Parameters) int {
	if m.mac == nil {
		m.mac = hmac.New(sha256.New, []byte(p.DateShiftKey))
	}
	m.buf = appendDateShiftInput(m.buf[:0], scope, id)
	o := dateShiftOffset(m.mac, m.buf, p.DateShiftRangeInDays)
	if cap(m.buf) > maxPooledInput {
		m.buf = nil
	}
	return o
}

// compartmentPatient returns the id of the patient whose compartment res is
// in.
func compartmentPatient(plan *typePlan, res *jsontree.Node) (string, bool) {
	if res.Type() == "Patient" {
		if id := res.Get("id"); id != nil && id.Kind == jsontree.String && id.Value() != "" {
			return id.Value(), true
		}
		return "", false
	}
	var buf, buf2 [8]*jsontree.Node
	var rbuf [2]*jsontree.Node
	for _, path := range plan.compartment {
		nodes, spare := append(buf[:0], res), buf2[:0]
		for _, step := range path {
			next := spare[:0]
			for _, n := range nodes {
				next = typed.Children(n, step, next)
			}
			nodes, spare = next, nodes
		}
		for _, ref := range nodes {
			for _, c := range typed.Children(ref, "reference", rbuf[:0]) {
				if c.Kind == jsontree.String {
					if id, ok := PatientReferenceID(c.Value()); ok {
						return id, true
					}
				}
			}
		}
	}
	return "", false
}

// PatientReferenceID returns the id of the Patient a literal reference
// points to: "Patient/123", "https://example.org/fhir/Patient/123" and
// "Patient/123/_history/2" all give "123". Other references (to other
// types, contained "#x", "urn:uuid:...") give ok=false.
func PatientReferenceID(ref string) (string, bool) {
	if id, ok := strings.CutPrefix(ref, "Patient/"); ok && id != "" && strings.IndexByte(id, '/') < 0 {
		return id, true // the common form, found without scanning it twice
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	typ, id, ok := "", "", false
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		id = ref[i+1:]
		rest := ref[:i]
		if j := strings.LastIndexByte(rest, '/'); j >= 0 {
			typ = rest[j+1:]
		} else {
			typ = rest
		}
		ok = typ == "Patient" && id != ""
	}
	return id, ok
}

// PatientDateShiftOffset derives the offset in days of scope "patient":
// HMAC-SHA256 keyed with the dateShiftKey over the scope ("patient" or
// "resource") and the id, reduced to [-rangeDays, -1] ∪ [1, rangeDays]. A
// rangeDays below 1 means the default, 50.
func PatientDateShiftOffset(key, scope, id string, rangeDays int) int {
	return dateShiftOffset(hmac.New(sha256.New, []byte(key)), appendDateShiftInput(nil, scope, id), rangeDays)
}

// appendDateShiftInput appends the text that PatientDateShiftOffset's HMAC
// reads.
func appendDateShiftInput(dst []byte, scope, id string) []byte {
	dst = append(dst, "fhirdeid date shift\x00"...)
	dst = append(dst, scope...)
	dst = append(dst, 0)
	return append(dst, id...)
}

// dateShiftOffset returns the offset of the HMAC (m, keyed) of in.
func dateShiftOffset(m hash.Hash, in []byte, rangeDays int) int {
	if rangeDays < 1 {
		rangeDays = DefaultDateShiftRange
	}
	m.Reset()
	m.Write(in)
	var sum [sha256.Size]byte
	v := binary.BigEndian.Uint64(m.Sum(sum[:0]))
	o := int(v%uint64(2*rangeDays)) - rangeDays
	if o >= 0 {
		o++
	}
	return o
}

// shiftPatientDate applies dateShift in scope "patient" to one date node of
// res.
func (r *run) shiftPatientDate(node *jsontree.Node, dt DateType, rule *engineRule, res *jsontree.Node, ops *Operations) error {
	birthDate := res.Type() == "Patient" && node.Name() == "birthDate" && typed.Parent(node) == res
	var stack [64]byte
	b, out, keep, op, err := appendShiftDateKeepTime(stack[:0], node.Value(), dt, r.pshift.offset, r.e.params.EnablePartialDatesForRedact, birthDate, r.today)
	if err != nil {
		return r.processingError(rule, node, err)
	}
	if b != nil {
		out = r.text(b)
	}
	r.setDerived(node, out, keep)
	*ops = ops.Add(op)
	return nil
}

// ShiftDateKeepTime applies dateShift in scope "patient" to one value: a
// value with a day ("YYYY-MM-DD", followed for a dateTime or instant by
// "Thh:mm:ss[.f][zone]") has its calendar date moved by offset days and
// keeps the rest verbatim, and returns OpPerturb. A value without a day, or
// not in that form, falls back to RedactDate (OpRedact). A date that
// indicates an age over 89 relative to today, before or after the shift, is
// removed (OpRedact); when birthDate is set it becomes instead the year that
// makes 90 (today's year minus 90). The error never quotes the value.
func ShiftDateKeepTime(value string, t DateType, offset int, partial, birthDate bool, today time.Time) (out string, keep bool, op Operation, err error) {
	var stack [64]byte
	b, out, keep, op, err := appendShiftDateKeepTime(stack[:0], value, t, offset, partial, birthDate, today)
	if b != nil {
		out = string(b)
	}
	return out, keep, op, err
}

// appendShiftDateKeepTime is ShiftDateKeepTime, but a shifted date is
// appended to dst and returned as b (out is then empty); any other result
// is returned as out with b nil.
func appendShiftDateKeepTime(dst []byte, value string, t DateType, offset int, partial, birthDate bool, today time.Time) (b []byte, out string, keep bool, op Operation, err error) {
	y, okY := digits(value, 0, 4)
	m, okM := dashTwo(value, 4)
	d, okD := dashTwo(value, 7)
	rest := ""
	if len(value) > 10 {
		rest = value[10:]
	}
	if !okY || !okM || !okD || y == 0 || m < 1 || m > 12 || d < 1 || d > 31 ||
		(rest != "" && (t == Date || rest[0] != 'T')) {
		out, keep = RedactDate(value, t, partial, today)
		return nil, out, keep, OpRedact, nil
	}
	sy, sm, sd, valid, inRange := addDays(y, m, d, offset)
	if !valid {
		return nil, "", false, OpPerturb, fmt.Errorf("shifting %s: %w: not a calendar date", t, ErrDateRange)
	}
	if !inRange {
		return nil, "", false, OpPerturb, fmt.Errorf("shifting %s: %w", t, ErrDateRange)
	}
	before := dateParts{year: y, month: m, day: d, ok: true}
	after := dateParts{year: sy, month: sm, day: sd, ok: true}
	ty, tm, td := today.Date()
	if before.ageOverOn(ty, tm, td) || after.ageOverOn(ty, tm, td) {
		if birthDate {
			return nil, fmt.Sprintf("%04d", today.Year()-90), true, OpRedact, nil
		}
		return nil, "", false, OpRedact, nil
	}
	b = append(dst, byte('0'+sy/1000), byte('0'+sy/100%10), byte('0'+sy/10%10), byte('0'+sy%10), '-',
		byte('0'+sm/10), byte('0'+sm%10), '-', byte('0'+sd/10), byte('0'+sd%10))
	return append(b, rest...), "", true, OpPerturb, nil
}
