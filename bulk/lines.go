package bulk

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// LineReader splits NDJSON into lines without copying short ones. Lines may
// be up to a maximum length; blank lines are skipped but counted in the line
// numbers.
type LineReader struct {
	r    *bufio.Reader
	max  int
	big  []byte
	cur  []byte
	n    int64
	read int64
	err  error
}

// NewLineReader reads lines of at most maxLine bytes from r.
func NewLineReader(r io.Reader, maxLine int) *LineReader {
	if maxLine <= 0 {
		maxLine = 256 << 20
	}
	return &LineReader{r: bufio.NewReaderSize(r, 1<<20), max: maxLine}
}

// Next advances to the next non-blank line.
func (l *LineReader) Next() bool {
	for l.err == nil {
		line, err := l.r.ReadSlice('\n')
		tooLong := false
		if errors.Is(err, bufio.ErrBufferFull) {
			line, tooLong, err = l.long(line)
		}
		if len(line) > 0 || tooLong {
			l.n++
			l.read += int64(len(line))
			if tooLong || len(line) > l.max+1 || (len(line) > l.max && line[len(line)-1] != '\n') {
				l.big = nil
				l.err = &LimitError{Line: l.n, Limit: "maxLineBytes", Msg: fmt.Sprintf("longer than %d bytes", l.max)}
				return false
			}
			if err != nil && !errors.Is(err, io.EOF) {
				l.err = err
				return false
			}
			t := bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(t)) > 0 {
				l.cur = t
				if errors.Is(err, io.EOF) {
					l.err = io.EOF
				}
				return true
			}
		}
		if err != nil {
			l.err = err
		}
	}
	return false
}

// long gathers a line longer than the read buffer, whose first part is
// first. Parts are copied into chunks of the read buffer's size until the
// line ends or passes the limit, so that a line over the limit (a hostile
// server's endless line, a compression bomb) costs at most the limit,
// touched as it arrives. A line within the limit is then copied once into
// l.big, reused across the file's long lines and allocated at the line's
// exact size, never at the limit: a make at the limit may be zeroed by the
// runtime, touching all of it. The returned line is l.big or, past the
// limit, nil and tooLong.
func (l *LineReader) long(first []byte) (line []byte, tooLong bool, err error) {
	size := l.r.Size()
	var chunks [][]byte
	total := 0
	add := func(p []byte) {
		for len(p) > 0 && total <= l.max {
			if len(chunks) == 0 || len(chunks[len(chunks)-1]) == size {
				chunks = append(chunks, make([]byte, 0, size))
			}
			c := chunks[len(chunks)-1]
			n := min(len(p), size-len(c), l.max+1-total)
			chunks[len(chunks)-1] = append(c, p[:n]...)
			p = p[n:]
			total += n
		}
	}
	add(first)
	err = bufio.ErrBufferFull
	for errors.Is(err, bufio.ErrBufferFull) && total <= l.max {
		var part []byte
		part, err = l.r.ReadSlice('\n')
		add(part)
	}
	if last := chunks[len(chunks)-1]; total > l.max+1 || (total > l.max && last[len(last)-1] != '\n') {
		return nil, true, err
	}
	if cap(l.big) < total {
		l.big = make([]byte, 0, total)
	}
	l.big = l.big[:0]
	for _, c := range chunks {
		l.big = append(l.big, c...)
	}
	return l.big, false, err
}

// Line returns the current line without its end of line. It is valid until
// the next call to Next.
func (l *LineReader) Line() []byte { return l.cur }

// LineNumber returns the 1-based number of the current line.
func (l *LineReader) LineNumber() int64 { return l.n }

// BytesRead returns the bytes consumed so far.
func (l *LineReader) BytesRead() int64 { return l.read }

// Err returns the first error other than io.EOF.
func (l *LineReader) Err() error {
	if errors.Is(l.err, io.EOF) {
		return nil
	}
	return l.err
}

// ResourceType returns the value of the top-level "resourceType" member of
// a JSON object without decoding the rest: it skips over other members
// (usually none come first). It returns an error, never quoting the input,
// when the line is not a JSON object or has no top-level resourceType.
func ResourceType(line []byte) (string, error) {
	raw, esc, err := resourceTypeRaw(line)
	if err != nil {
		return "", err
	}
	if esc || !utf8.Valid(raw) {
		// encoding/json decodes escapes and turns invalid UTF-8 into
		// U+FFFD, as the parsers after this scan do.
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", errors.New("invalid resourceType string")
		}
		return s, nil
	}
	return string(raw[1 : len(raw)-1]), nil
}

// resourceTypeRaw returns the quoted JSON string of the top-level
// resourceType and whether it holds escapes.
func resourceTypeRaw(line []byte) ([]byte, bool, error) {
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return nil, false, errors.New("not a JSON object")
	}
	i++
	for {
		i = skipWS(line, i)
		if i >= len(line) {
			return nil, false, errors.New("truncated JSON object")
		}
		if line[i] == '}' {
			return nil, false, errors.New("no top-level resourceType")
		}
		if line[i] == ',' {
			i++
			continue
		}
		if line[i] != '"' {
			return nil, false, errors.New("invalid JSON object member")
		}
		ks, ke, esc, ok := scanString(line, i)
		if !ok {
			return nil, false, errors.New("unterminated JSON string")
		}
		key := line[ks:ke]
		i = skipWS(line, ke+1)
		if i >= len(line) || line[i] != ':' {
			return nil, false, errors.New("invalid JSON object member")
		}
		i = skipWS(line, i+1)
		if !esc && string(key) == "resourceType" {
			if i >= len(line) || line[i] != '"' {
				return nil, false, errors.New("resourceType is not a string")
			}
			vs, ve, vesc, ok := scanString(line, i)
			if !ok {
				return nil, false, errors.New("unterminated JSON string")
			}
			return line[vs-1 : ve+1], vesc, nil
		}
		j, ok := skipValue(line, i)
		if !ok {
			return nil, false, errors.New("invalid JSON value")
		}
		i = j
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// scanString scans the string starting at the quote b[i]; it returns the
// content bounds [s,e) (b[e] is the closing quote) and whether it holds
// escapes.
func scanString(b []byte, i int) (s, e int, esc, ok bool) {
	s = i + 1
	for j := s; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, 0, false, false
		}
		j += k
		// The quote is escaped if an odd number of backslashes precede it.
		n := 0
		for p := j - 1; p >= s && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 1 {
			j++
			continue
		}
		return s, j, bytes.IndexByte(b[s:j], '\\') >= 0, true
	}
	return 0, 0, false, false
}

// skipValue skips one JSON value starting at b[i] and returns the index
// after it.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '"':
		_, e, _, ok := scanString(b, i)
		return e + 1, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				_, e, _, ok := scanString(b, j)
				if !ok {
					return j, false
				}
				j = e
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return len(b), false
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' {
			j++
		}
		return j, j > i
	}
}

// Validator checks each line of a downloaded file against the manifest:
// every line's resourceType must be the expected type, and the number of
// lines must equal the manifest count when known.
type Validator struct {
	// File names the file in errors.
	File string
	// Type is the expected resourceType ("" accepts any).
	Type string
	// Count is the manifest count, or nil.
	Count *int64
	// AllowMore lets the lines exceed Count (the count is then checked
	// only by Finish, whose error the caller may accept).
	AllowMore bool

	lines int64
}

// Check validates one line; n is its line number.
func (v *Validator) Check(line []byte, n int64) error {
	v.lines++
	if v.Count != nil && !v.AllowMore && v.lines > *v.Count {
		return &ValidationError{File: v.File, Line: n, Msg: fmt.Sprintf("more resources than the manifest count %d; "+
			"if the server's counts are known to be wrong, --allow-count-mismatch (allowCountMismatch: true) accepts the file", *v.Count)}
	}
	if v.Type == "" {
		if _, err := ResourceType(line); err != nil {
			return &ValidationError{File: v.File, Line: n, Msg: err.Error()}
		}
		return nil
	}
	raw, esc, err := resourceTypeRaw(line)
	if err != nil {
		return &ValidationError{File: v.File, Line: n, Msg: err.Error()}
	}
	if !esc && len(raw) == len(v.Type)+2 && string(raw[1:len(raw)-1]) == v.Type {
		return nil
	}
	rt, err := ResourceType(line)
	if err != nil {
		return &ValidationError{File: v.File, Line: n, Msg: err.Error()}
	}
	if rt != v.Type {
		return &ValidationError{File: v.File, Line: n, Msg: fmt.Sprintf("resourceType %q, manifest type %q", safeName(rt), v.Type)}
	}
	return nil
}

// Lines returns the number of lines checked.
func (v *Validator) Lines() int64 { return v.lines }

// Finish checks the line count against the manifest count.
func (v *Validator) Finish() error {
	if v.Count != nil && *v.Count != v.lines {
		return &ValidationError{File: v.File, Msg: fmt.Sprintf("%d resources, manifest count %d; "+
			"if the server's counts are known to be wrong, --allow-count-mismatch (allowCountMismatch: true) accepts the file", v.lines, *v.Count)}
	}
	return nil
}

// safeName returns s when it looks like a resource type name (letters and
// digits, at most 64), else a placeholder: a mismatching line's
// resourceType is only ever printed when it cannot carry PHI.
func safeName(s string) string {
	if len(s) == 0 || len(s) > 64 {
		return "(invalid)"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return "(invalid)"
		}
	}
	return s
}

// Tombstones returns the "Type/id" references deleted by one line of a
// manifest's deleted file: a transaction Bundle whose entries have
// request.method DELETE.
func Tombstones(line []byte) ([]string, error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Request struct {
				Method string `json:"method"`
				URL    string `json:"url"`
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(line, &b); err != nil {
		return nil, errors.New("deleted: line is not a JSON Bundle")
	}
	if b.ResourceType != "Bundle" {
		return nil, errors.New("deleted: line is not a Bundle")
	}
	var out []string
	for i, e := range b.Entry {
		if e.Request.Method != "DELETE" {
			continue
		}
		typ, id, ok := strings.Cut(e.Request.URL, "/")
		if !ok || safeName(typ) != typ || id == "" {
			return nil, fmt.Errorf("deleted: entry %d request.url is not Type/id", i)
		}
		out = append(out, typ+"/"+id)
	}
	return out, nil
}

// FileReader reads the decompressed NDJSON of one manifest file line by
// line and validates it: each line's resourceType against the manifest
// type, and at the end the number of lines against the manifest count.
// It is what a pipeline stage consumes:
//
//	rc, err := client.Open(ctx, m, f)
//	...
//	fr := bulk.NewFileReader(rc, f, "Patient.000.ndjson.gz", 0)
//	for fr.Next() {
//		process(fr.Line())
//	}
//	err = fr.Err()
type FileReader struct {
	lr   *LineReader
	v    Validator
	err  error
	done bool
}

// NewFileReader reads r, the NDJSON of manifest file f; name identifies
// the file in errors, maxLine caps a line (0: 256 MiB). An error file's
// lines must be OperationOutcome and a deleted file's lines Bundle when
// f.Type is empty.
func NewFileReader(r io.Reader, f File, name string, maxLine int) *FileReader {
	return &FileReader{lr: NewLineReader(r, maxLine), v: Validator{File: name, Type: f.Type, Count: f.Count}}
}

// Next advances to the next valid line. It returns false at the end or at
// the first error.
func (fr *FileReader) Next() bool {
	if fr.err != nil || fr.done {
		return false
	}
	if !fr.lr.Next() {
		fr.done = true
		if err := fr.lr.Err(); err != nil {
			fr.err = err
			var be *bodyError
			var le *LimitError
			if errors.As(err, &le) && le.File == "" {
				le.File = fr.v.File
			}
			if !errors.As(err, &be) && le == nil {
				fr.err = &ValidationError{File: fr.v.File, Line: fr.lr.LineNumber(), Msg: err.Error()}
			}
			return false
		}
		fr.err = fr.v.Finish()
		return false
	}
	if err := fr.v.Check(fr.lr.Line(), fr.lr.LineNumber()); err != nil {
		fr.err = err
		return false
	}
	return true
}

// Line returns the current line; it is valid until the next call to Next.
func (fr *FileReader) Line() []byte { return fr.lr.Line() }

// LineNumber returns the 1-based number of the current line.
func (fr *FileReader) LineNumber() int64 { return fr.lr.LineNumber() }

// Resources returns the number of lines read so far.
func (fr *FileReader) Resources() int64 { return fr.v.Lines() }

// Err returns the first read or validation error; a count mismatch is
// reported once the end is reached.
func (fr *FileReader) Err() error { return fr.err }

// IsRetryable reports whether err is worth retrying (a network failure, a
// cut or stalled transfer, 429 or 5xx) rather than a validation error or a
// refusal. Pipelines that consume Open streams use it to decide whether to
// fetch a file again.
func IsRetryable(err error) bool { return isRetryable(err) }

// topLevelString returns the raw (still escaped) content of the top-level
// string member key of a JSON object.
func topLevelString(line []byte, key string) ([]byte, error) {
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	i++
	for {
		i = skipWS(line, i)
		if i >= len(line) || line[i] == '}' {
			return nil, errors.New("member not found")
		}
		if line[i] == ',' {
			i++
			continue
		}
		if line[i] != '"' {
			return nil, errors.New("invalid JSON object member")
		}
		ks, ke, esc, ok := scanString(line, i)
		if !ok {
			return nil, errors.New("unterminated JSON string")
		}
		i = skipWS(line, ke+1)
		if i >= len(line) || line[i] != ':' {
			return nil, errors.New("invalid JSON object member")
		}
		i = skipWS(line, i+1)
		if !esc && string(line[ks:ke]) == key {
			if i >= len(line) || line[i] != '"' {
				return nil, errors.New("member is not a string")
			}
			vs, ve, _, ok := scanString(line, i)
			if !ok {
				return nil, errors.New("unterminated JSON string")
			}
			return line[vs:ve], nil
		}
		j, ok := skipValue(line, i)
		if !ok {
			return nil, errors.New("invalid JSON value")
		}
		i = j
	}
}
