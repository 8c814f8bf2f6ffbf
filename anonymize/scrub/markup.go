package scrub

import (
	"strings"
)

// Format is the syntax of a text to scrub.
type Format uint8

// The formats ScrubMarkup understands.
const (
	Plain Format = iota
	HTML         // HTML or XHTML: text nodes and attribute values
	RTF          // RTF: text runs outside control words and font/colour tables
)

// FormatOf returns the format of a MIME content type ("text/html;
// charset=utf-8"), and whether it is a text type the scrubber handles.
func FormatOf(contentType string) (Format, bool) {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch {
	case ct == "text/html" || ct == "application/xhtml+xml" || ct == "text/xml" || ct == "application/xml":
		return HTML, true
	case ct == "text/rtf" || ct == "application/rtf":
		return RTF, true
	case strings.HasPrefix(ct, "text/"):
		return Plain, true
	}
	return Plain, false
}

// structuralAttrs are attribute values that carry no free text.
var structuralAttrs = map[string]bool{
	"class": true, "style": true, "id": true, "lang": true, "xml:lang": true, "dir": true, "colspan": true,
	"rowspan": true, "span": true, "width": true, "height": true, "align": true, "valign": true, "border": true,
	"cellpadding": true, "cellspacing": true, "type": true, "scope": true, "headers": true, "name": true, "rel": true,
}

// ScrubMarkup scrubs text in the given format: plain text whole, HTML/XHTML
// text nodes and attribute values (tags, entities, comments and structural
// attributes untouched, so well-formed XHTML stays well-formed), RTF text
// runs. Span positions are in the whole input.
func ScrubMarkup(text string, f Format, opts Options) Result {
	switch f {
	case HTML:
		return scrubSegments(text, htmlSegments(text), opts, true)
	case RTF:
		return scrubSegments(text, rtfSegments(text), opts, false)
	}
	return Scrub(text, opts)
}

// scrubSegments scrubs each [start, end) segment of text and keeps the rest.
// In markup (XHTML), a replacement must not form "]]>" with the text after
// it ("[NAME]" before "]>"), which XML forbids in text and which would end
// a CDATA section early: in text it becomes "]]&gt;", in a CDATA section
// the section is split around it.
func scrubSegments(text string, segs [][2]int, opts Options, markup bool) Result {
	var b strings.Builder
	b.Grow(len(text) + 16)
	var spans []Span
	pos := 0
	for _, sg := range segs {
		b.WriteString(strings.ToValidUTF8(text[pos:sg[0]], "\uFFFD"))
		r := Scrub(text[sg[0]:sg[1]], opts)
		if markup && strings.Contains(r.Text, "]]>") {
			if strings.HasSuffix(text[:sg[0]], "<![CDATA[") {
				r.Text = strings.ReplaceAll(r.Text, "]]>", "]]]]><![CDATA[>")
			} else {
				r.Text = strings.ReplaceAll(r.Text, "]]>", "]]&gt;")
			}
		}
		b.WriteString(r.Text)
		for _, sp := range r.Spans {
			sp.Start += sg[0]
			sp.End += sg[0]
			spans = append(spans, sp)
		}
		pos = sg[1]
	}
	b.WriteString(strings.ToValidUTF8(text[pos:], "\uFFFD"))
	return Result{Text: b.String(), Spans: spans}
}

// htmlSegments returns the text runs of HTML: between tags, split at
// entity references, and the values of non-structural attributes.
func htmlSegments(t string) [][2]int {
	var segs [][2]int
	addText := func(a, b int) {
		// Split at entities (&amp; &#39;) so that they stay intact.
		for a < b {
			i := strings.IndexByte(t[a:b], '&')
			if i < 0 {
				segs = append(segs, [2]int{a, b})
				return
			}
			if i > 0 {
				segs = append(segs, [2]int{a, a + i})
			}
			j := a + i + 1
			for j < b && j < a+i+32 && t[j] != ';' && t[j] != '&' && t[j] != ' ' {
				j++
			}
			if j < b && t[j] == ';' {
				j++
			}
			a = j
		}
	}
	i := 0
	for i < len(t) {
		lt := strings.IndexByte(t[i:], '<')
		if lt < 0 {
			addText(i, len(t))
			break
		}
		addText(i, i+lt)
		i += lt
		switch {
		case strings.HasPrefix(t[i:], "<!--"):
			end := strings.Index(t[i+4:], "-->")
			if end < 0 {
				return append(segs, [2]int{i, len(t)}) // an unterminated comment: scrub it as text
			}
			i += 4 + end + 3
			continue
		case strings.HasPrefix(t[i:], "<![CDATA["):
			end := strings.Index(t[i+9:], "]]>")
			if end < 0 {
				return append(segs, [2]int{i + 9, len(t)})
			}
			segs = append(segs, [2]int{i + 9, i + 9 + end})
			i += 9 + end + 3
			continue
		}
		// <script> and <style> hold code, not text: skip to their end tag.
		if name := tagName(t[i:]); name == "script" || name == "style" {
			// Without an end tag it is all scrubbed as text: safer.
			if end := indexFold(t[i:], "</"+name); end >= 0 {
				i += end
			}
		}
		// A tag: scan attributes.
		j := i + 1
		for j < len(t) && t[j] != '>' && t[j] != ' ' && t[j] != '\t' && t[j] != '\n' && t[j] != '\r' && t[j] != '/' {
			j++
		}
		for j < len(t) && t[j] != '>' {
			c := t[j]
			if c == '"' || c == '\'' {
				end := strings.IndexByte(t[j+1:], c)
				if end < 0 {
					return segs
				}
				// The attribute's name is before the '='.
				// (Bounded scans: a tag of many quotes stays linear.)
				k := j - 1
				for k > i && k > j-16 && (t[k] == ' ' || t[k] == '=') {
					k--
				}
				n := k
				for n > i && n > k-64 && t[n] != ' ' && t[n] != '\t' && t[n] != '\n' && t[n] != '\r' {
					n--
				}
				name := strings.ToLower(t[n+1 : k+1])
				if !structuralAttrs[name] && !strings.HasPrefix(name, "xmlns") && !strings.HasPrefix(name, "on") {
					addText(j+1, j+1+end)
				}
				j += end + 2
				continue
			}
			j++
		}
		i = j + 1
	}
	return segs
}

// rtfSegments returns the plain text runs of RTF.
func rtfSegments(t string) [][2]int {
	var segs [][2]int
	depth := 0
	skipBelow := -1 // inside a group to skip while depth >= skipBelow
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start && skipBelow < 0 {
			segs = append(segs, [2]int{start, end})
		}
		start = -1
	}
	for i := 0; i < len(t); {
		c := t[i]
		switch c {
		case '{':
			flush(i)
			depth++
			i++
		case '}':
			flush(i)
			if skipBelow >= 0 && depth <= skipBelow {
				skipBelow = -1
			}
			depth--
			i++
		case '\\':
			flush(i)
			if i+1 >= len(t) {
				i++
				continue
			}
			n := t[i+1]
			switch {
			case isLetterByte(n):
				j := i + 1
				for j < len(t) && isLetterByte(t[j]) {
					j++
				}
				word := t[i+1 : j]
				if j < len(t) && t[j] == '-' {
					j++
				}
				for j < len(t) && isDigit(t[j]) {
					j++
				}
				if j < len(t) && t[j] == ' ' {
					j++
				}
				switch word {
				case "fonttbl", "colortbl", "stylesheet", "pict", "listtable", "listoverridetable", "themedata", "datastore", "objdata", "generator":
					if skipBelow < 0 {
						skipBelow = depth
					}
				}
				i = j
			case n == '\'':
				i += 4
				if i > len(t) {
					i = len(t)
				}
			case n == '*':
				if skipBelow < 0 {
					skipBelow = depth
				}
				i += 2
			default:
				i += 2
			}
		case '\r', '\n':
			flush(i)
			i++
		default:
			if start < 0 {
				start = i
			}
			i++
		}
	}
	flush(len(t))
	return segs
}

// tagName returns the lower-cased name of the tag t starts with ("<p ...").
func tagName(t string) string {
	j := 1
	for j < len(t) && j < 16 && isLetterByte(t[j]) {
		j++
	}
	return strings.ToLower(t[1:j])
}

// indexFold is strings.Index ignoring ASCII case.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}
