package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Kind is the kind of a collected identifier.
type Kind uint8

const (
	KindName        Kind = iota + 1 // a whole name: given and family, or a name's text
	KindNamePart                    // one given name or the family name alone (weak)
	KindTelecom                     // a telephone number or other contact point
	KindEmail                       // an e-mail address
	KindIdentifier                  // Identifier.value: MRN, SSN, licence, passport, ...
	KindAddressLine                 // an address line or an address's text
	KindCity                        // a city or district (weak)
	KindPostalCode                  // a postal code (weak)
	KindDate                        // a birth or death date, whole (year, month and day)
	KindURL                         // Attachment.url
)

var kindNames = [...]string{"", "name", "name-part", "telecom", "email", "identifier", "address-line", "city", "postal-code", "date", "url"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Weak kinds are single words that are often also ordinary words or shared
// by many people (a given name, a city): a match counts only when another
// identifier of the same person is found in the same output resource.
func (k Kind) Weak() bool { return k == KindNamePart || k == KindCity || k == KindPostalCode }

const (
	nShards = 64
	// maxTokens is the longest identifier, in tokens, that is matched as
	// a whole; longer ones are matched on their first maxTokens tokens.
	maxTokens = 31
	// maxEntities is how many people a weak value may belong to before it
	// is considered common and never counts on its own.
	maxEntities = 16
	// bloomBits is the size of the prefilter (1 MiB), a Bloom filter with
	// two probes: about 4 % false candidates per token with a million
	// identifiers. While it holds few entries, scans consult a smaller
	// copy instead (smallBloomBits).
	bloomBits = 1 << 23
)

func bloomProbes(h uint64, bits uint32) (uint32, uint32) {
	return uint32(h) & (bits - 1), uint32(h>>32) & (bits - 1)
}

const (
	// smallBloomBits is the size of a second prefilter (32 KiB, within a
	// core's L1 and L2 beside the de-identifier's own memory), consulted
	// instead of the large one while it holds at most smallBloomMax
	// entries: about 1.5 % false candidates per token then. Both filters
	// hold every entry, so either may be consulted at any time.
	smallBloomBits = 1 << 18
	smallBloomMax  = 16 << 10
)

// quick is the prefilter's hash of a token or phrase; it also names the
// anchors of a FileScan.
func (c *Collector) quick(b []byte) uint64 { return maphash.Bytes(c.seed, b) }

func (c *Collector) bloomSet(h uint64) {
	c.bloomN.Add(1)
	p1, p2 := bloomProbes(h, smallBloomBits)
	c.small[p1/64].Or(1 << (p1 % 64))
	c.small[p2/64].Or(1 << (p2 % 64))
	p1, p2 = bloomProbes(h, bloomBits)
	c.bloom[p1/64].Or(1 << (p1 % 64))
	c.bloom[p2/64].Or(1 << (p2 % 64))
}

// prefilter returns the filter a scan consults for now: the small one
// while it is sparse.
func (c *Collector) prefilter() (bloom []atomic.Uint64, bits uint32) {
	if c.bloomN.Load() <= smallBloomMax {
		return c.small, smallBloomBits
	}
	return c.bloom, bloomBits
}

func bloomHas(bloom []atomic.Uint64, bits uint32, h uint64) bool {
	p1, p2 := bloomProbes(h, bits)
	return bloom[p1/64].Load()&(1<<(p1%64)) != 0 && bloom[p2/64].Load()&(1<<(p2%64)) != 0
}

// longHex reports a token of 32 hex digits or more: the hashed ids and
// references of de-identified output, which FileScan does not remember.
func longHex(tok []byte) bool {
	if len(tok) < 32 {
		return false
	}
	for _, c := range tok {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// entry is what the index knows about one keyed hash: the identifier whose
// normalised form hashes to it (info >= 0), and the lengths in tokens of the
// identifiers whose first token hashes to it (bit L set).
type entry struct {
	info int32
	lens uint32
}

// itemInfo is one collected identifier: its kind and the people (raw
// resources) it belongs to, or common when they are more than maxEntities.
type itemInfo struct {
	kind   Kind
	common bool
	// hexAnchor: the anchor holds a longHex token.
	hexAnchor bool
	ent0      uint32
	more      []uint32
	// gen is the generation of the identifier's last change, and anchor
	// the prefilter hash of its first token (one token) or first two
	// tokens: a scan that began before gen and saw no token (or adjacent
	// pair of tokens) hashing to anchor could not have matched it.
	gen    int64
	anchor uint64
}

func (in *itemInfo) has(e uint32) bool { return in.ent0 == e || containsEnt(in.more, e) }

// shares reports whether in and o belong to a common person.
func (in *itemInfo) shares(o *itemInfo) bool {
	if in.common || o.common {
		return false
	}
	if o.has(in.ent0) {
		return true
	}
	for _, e := range in.more {
		if o.has(e) {
			return true
		}
	}
	return false
}

type shard struct {
	mu    sync.Mutex
	m     map[uint64]entry
	infos []itemInfo
}

// Collector gathers the direct identifiers of raw resources as keyed hashes
// (SipHash-2-4 under a random key that never leaves the process) of their
// normalised tokens: it keeps no value. Collect is safe for concurrent use,
// and so is scanning while collection goes on: a scan sees the identifiers
// collected before it, and Gen says whether any changed since (see
// FileScan).
type Collector struct {
	key sipKey
	// dayKey hashes the days of the output's date values that FileScans
	// record (see SetDayKey).
	dayKey sipKey
	// gen counts the changes to the index (an identifier added, a person
	// or a kind added to one): a scan that began at generation g saw every
	// identifier as it is if Gen is still g.
	gen       atomic.Int64
	shards    [nShards]shard
	entities  atomic.Uint32
	resources atomic.Int64
	invalid   atomic.Int64
	pool      sync.Pool
	// seed and bloom are a prefilter of the scan: bits per (random-seeded)
	// hash of every collected identifier and of the first two tokens of
	// every multi-token one, so that most output tokens are dismissed
	// without a SipHash and a map lookup.
	seed  maphash.Seed
	bloom []atomic.Uint64
	// small is the same filter, smaller (see smallBloomBits); bloomN
	// counts the entries added to both.
	small  []atomic.Uint64
	bloomN atomic.Int64
	// cleanSeed hashes the strings the scanners found clean (cleanSet).
	cleanSeed maphash.Seed
	// MaxIdentifiers bounds the identifiers kept (default
	// DefaultMaxIdentifiers, about 60 bytes each); beyond it collection
	// stops and the report says the audit is incomplete.
	MaxIdentifiers int
	count          atomic.Int64
	full           atomic.Bool
	// hexAnchors is set once an identifier's anchor holds a longHex
	// token: until then scans skip the hashed ids of the output.
	hexAnchors atomic.Bool
	// naive turns the matching rules off (every value collected, weak words
	// count alone): only to measure what the rules save.
	naive bool
}

// NewCollector returns an empty collector with a fresh random key.
func NewCollector() *Collector {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("audit: no randomness: " + err.Error())
	}
	k := sipKey{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
	c := &Collector{key: k, dayKey: k,
		seed: maphash.MakeSeed(), cleanSeed: maphash.MakeSeed(), bloom: make([]atomic.Uint64, bloomBits/64),
		small: make([]atomic.Uint64, smallBloomBits/64)}
	for i := range c.shards {
		c.shards[i].m = map[uint64]entry{}
	}
	c.pool.New = func() any { return &collectState{c: c} }
	return c
}

// SetDayKey sets the key of the hashes of days (of the output's date
// values) that FileScan.RewrittenDayHashes returns and
// Scanner.RewrittenDayHashes takes, so that the processes of one run that
// share it can hand each other those hashes (the identifiers' own key
// stays random and in the process). By default it is random. Call it
// before any scan.
func (c *Collector) SetDayKey(key [16]byte) {
	c.dayKey = sipKey{binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])}
}

// day hashes the day of a date value ("YYYY-MM-DD").
func (c *Collector) day(v []byte) uint64 { return c.dayKey.sum64(v) }

// DefaultMaxIdentifiers is the default Collector.MaxIdentifiers.
const DefaultMaxIdentifiers = 4 << 20

func (c *Collector) max() int {
	if c.MaxIdentifiers > 0 {
		return c.MaxIdentifiers
	}
	return DefaultMaxIdentifiers
}

// Full reports whether the collector reached its limit.
func (c *Collector) Full() bool { return c.full.Load() }

// Identifiers returns the number of distinct identifiers collected.
func (c *Collector) Identifiers() int64 {
	var n int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += int64(len(s.infos))
		s.mu.Unlock()
	}
	return n
}

// Resources returns the number of resources collected from, and how many
// of them could not be read as JSON.
func (c *Collector) Resources() (read, invalid int64) { return c.resources.Load(), c.invalid.Load() }

// Gen returns the number of changes made to the index so far.
func (c *Collector) Gen() int64 { return c.gen.Load() }

// lookup returns the entry of h and, when it is an identifier, a copy of
// what is known of it, read under the shard's lock so that collection may go
// on. The copy's list of people may be appended to later, beyond its
// length: what the copy holds stays as it was.
func (c *Collector) lookup(h uint64) (entry, itemInfo, bool) {
	s := &c.shards[h%nShards]
	s.mu.Lock()
	e, ok := s.m[h]
	var in itemInfo
	if ok && e.info >= 0 {
		in = s.infos[e.info]
	}
	s.mu.Unlock()
	return e, in, ok
}

// Collect adds the direct identifiers of one raw resource (a JSON
// document): the parts and wholes of every HumanName, every telecom value,
// Identifier.value, address line, city, district and postal code, the birth
// and death dates, and Attachment.url, wherever they appear (extensions and
// contained resources included). A document that is not valid JSON is
// counted and otherwise ignored; the error says so without quoting it.
func (c *Collector) Collect(resource []byte) error {
	c.resources.Add(1)
	if !mayIdentify(resource) {
		return nil
	}
	st := c.pool.Get().(*collectState)
	defer c.pool.Put(st)
	return st.text(resource)
}

// text collects from one resource's JSON text that mayIdentify.
func (st *collectState) text(resource []byte) error {
	st.entity = 0
	st.inName = false
	if err := st.w.walk(resource, st); err != nil {
		st.c.invalid.Add(1)
		return err
	}
	return nil
}

// collectState is one Collect call's scratch.
type collectState struct {
	c      *Collector
	w      walker
	tw     treeWalker
	t      tokens
	entity uint32
	// the HumanName being read
	inName bool
	given  [][]byte
	family []byte
	phrase []byte
}

func (st *collectState) entityID() uint32 {
	if st.entity == 0 {
		st.entity = st.c.entities.Add(1)
	}
	return st.entity
}

func isNameKey(k []byte) bool { return string(k) == "name" || string(k) == "valueHumanName" }

func isAttachmentKey(k []byte) bool {
	switch string(k) {
	case "attachment", "photo", "valueAttachment", "presentedForm", "contentAttachment", "sourceAttachment", "content":
		return true
	}
	return false
}

func (st *collectState) objectStart(path [][]byte) {
	if len(path) > 0 && isNameKey(path[len(path)-1]) {
		st.inName = true
		st.given = st.given[:0]
		st.family = st.family[:0]
	}
}

func (st *collectState) objectEnd(path [][]byte) {
	if !st.inName || len(path) == 0 || !isNameKey(path[len(path)-1]) {
		return
	}
	st.inName = false
	if len(st.family) == 0 || len(st.given) == 0 {
		return
	}
	// given family, all givens family, family given.
	st.phrase = append(append(append(st.phrase[:0], st.given[0]...), ' '), st.family...)
	st.add(st.phrase, KindName)
	if len(st.given) > 1 {
		st.phrase = st.phrase[:0]
		for _, g := range st.given {
			st.phrase = append(append(st.phrase, g...), ' ')
		}
		st.phrase = append(st.phrase, st.family...)
		st.add(st.phrase, KindName)
	}
	st.phrase = append(append(append(st.phrase[:0], st.family...), ' '), st.given[0]...)
	st.add(st.phrase, KindName)
}

func (st *collectState) str(path [][]byte, v []byte) {
	n := len(path)
	if n == 0 {
		return
	}
	last := string(path[n-1]) // no copy: compared only
	var parent []byte
	if n > 1 {
		parent = path[n-2]
	}
	switch {
	case isNameKey(parent) && (last == "family" || last == "given"):
		if !st.inName {
			return
		}
		st.add(v, KindNamePart)
		if last == "family" {
			st.family = append(st.family[:0], v...)
		} else if len(st.given) < 8 {
			st.given = append(st.given, append([]byte(nil), v...))
		}
	case isNameKey(parent) && last == "text":
		st.add(v, KindName)
	case last == "value" && (string(parent) == "telecom" || string(parent) == "valueContactPoint"):
		if bytes.IndexByte(v, '@') >= 0 {
			st.add(v, KindEmail)
		} else {
			st.add(v, KindTelecom)
		}
	case last == "value" && (string(parent) == "identifier" || string(parent) == "valueIdentifier"):
		st.add(v, KindIdentifier)
	case string(parent) == "address" || string(parent) == "valueAddress":
		switch last {
		case "line", "text":
			st.add(v, KindAddressLine)
		case "city", "district":
			st.add(v, KindCity)
		case "postalCode":
			st.add(v, KindPostalCode)
		}
	case last == "birthDate" || last == "deceasedDateTime":
		if len(v) >= 10 {
			st.add(v[:10], KindDate)
		}
	case last == "url" && isAttachmentKey(parent):
		st.add(v, KindURL)
	}
}

// add indexes one identifier value of kind k, if it is distinctive enough
// to be matched without drowning the signal (see accept).
func (st *collectState) add(v []byte, k Kind) {
	t := &st.t
	t.split(v)
	n := t.n()
	if n == 0 {
		return
	}
	if n > maxTokens {
		n = maxTokens
	}
	compact := t.span(0, n)
	if n == 1 && k == KindName {
		k = KindNamePart // a one-word name is only a part
	}
	if !st.c.naive && !accept(compact, k) {
		return
	}
	c := st.c
	ent := st.entityID()
	c.bloomSet(c.quick(compact))
	anchor, hexAnchor := c.quick(compact), longHex(compact)
	if n >= 2 {
		anchor = c.quick(t.span(0, 2))
		hexAnchor = longHex(t.span(0, 1)) || longHex(t.span(1, 2))
		c.bloomSet(anchor) // the first two tokens: years and house numbers alone are everywhere
	}
	h := c.key.sum64(compact)
	s := &c.shards[h%nShards]
	s.mu.Lock()
	e, ok := s.m[h]
	if !ok {
		e.info = -1
	}
	if e.info < 0 {
		e.info = int32(len(s.infos))
		if c.count.Add(1) > int64(c.max()) {
			c.count.Add(-1)
			c.full.Store(true)
			s.mu.Unlock()
			return
		}
		if hexAnchor {
			c.hexAnchors.Store(true) // before the change is counted
		}
		s.infos = append(s.infos, itemInfo{kind: k, ent0: ent, anchor: anchor, hexAnchor: hexAnchor, gen: c.gen.Add(1)})
	} else {
		in := &s.infos[e.info]
		if in.kind.Weak() && !k.Weak() {
			in.kind = k
			in.gen = c.gen.Add(1)
		}
		if !in.common && !in.has(ent) {
			if len(in.more)+1 >= maxEntities {
				in.common, in.more = true, nil
			} else {
				in.more = append(in.more, ent)
			}
			in.gen = c.gen.Add(1)
		}
	}
	s.m[h] = e
	s.mu.Unlock()
	if n >= 2 {
		hf := c.key.sum64(t.span(0, 1))
		s := &c.shards[hf%nShards]
		s.mu.Lock()
		e, ok := s.m[hf]
		if !ok {
			e.info = -1
		}
		if e.lens&(1<<n) == 0 {
			e.lens |= 1 << n
			s.m[hf] = e
			c.gen.Add(1)
		}
		s.mu.Unlock()
	}
}

func containsEnt(ents []uint32, e uint32) bool {
	for _, x := range ents {
		if x == e {
			return true
		}
	}
	return false
}

// accept decides whether a normalised identifier is distinctive enough to
// look for: weak words need 2 letters (name parts; they count only when
// corroborated) or 3 (cities), postal codes 5 characters, everything else
// 5 characters, and 6 when it is only digits — so that "1", a year, a
// house number or a two-letter state never match.
func accept(compact []byte, k Kind) bool {
	letter, digit := letters(compact)
	switch k {
	case KindNamePart:
		return letter && len(compact) >= 2
	case KindCity:
		return letter && len(compact) >= 3
	case KindPostalCode:
		return len(compact) >= 5
	}
	if len(compact) < 5 {
		return false
	}
	if digit && !letter && len(compact) < 6 {
		return false
	}
	return true
}
