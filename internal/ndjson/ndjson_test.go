package ndjson_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"fhirdeid/internal/ndjson"
)

func upper(worker int, n int64, line, dst []byte) ([]byte, error) {
	return append(dst, bytes.ToUpper(line)...), nil
}

func TestTransformKeepsOrder(t *testing.T) {
	var in, want strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&in, `{"n":%d,"pad":"%s"}`+"\n", i, strings.Repeat("x", i%300))
		fmt.Fprintf(&want, `{"N":%d,"PAD":"%s"}`+"\n", i, strings.Repeat("X", i%300))
	}
	for _, workers := range []int{1, 2, 7} {
		var out bytes.Buffer
		st, err := ndjson.Transform(context.Background(), strings.NewReader(in.String()), &out, upper,
			ndjson.Options{Workers: workers, BatchBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		if out.String() != want.String() {
			t.Fatalf("workers=%d: output differs from input order", workers)
		}
		if st.Lines != 20000 || st.Written != 20000 || st.BytesOut != int64(out.Len()) {
			t.Errorf("workers=%d: stats %+v", workers, st)
		}
	}
}

func TestTransformLineNumbersAndBlankLines(t *testing.T) {
	in := "a\n\n  \nb\r\nc" // no final newline, blank lines, CRLF
	var got []string
	var out bytes.Buffer
	fn := func(w int, n int64, line, dst []byte) ([]byte, error) {
		got = append(got, fmt.Sprintf("%d:%s", n, line))
		if string(line) == "b" {
			return dst, nil // dropped
		}
		return append(dst, line...), nil
	}
	st, err := ndjson.Transform(context.Background(), strings.NewReader(in), &out, fn, ndjson.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "1:a 4:b 5:c" {
		t.Errorf("lines seen: %v", got)
	}
	if out.String() != "a\nc\n" || st.Lines != 3 || st.Written != 2 {
		t.Errorf("out %q stats %+v", out.String(), st)
	}
}

func TestTransformErrors(t *testing.T) {
	var in strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&in, "line%d\n", i)
	}
	bad := errors.New("bad resource")
	fn := func(w int, n int64, line, dst []byte) ([]byte, error) {
		if n == 3210 {
			return dst, bad
		}
		return append(dst, line...), nil
	}
	var out bytes.Buffer
	_, err := ndjson.Transform(context.Background(), strings.NewReader(in.String()), &out, fn,
		ndjson.Options{Workers: 3, BatchBytes: 100})
	var le *ndjson.LineError
	if !errors.As(err, &le) || le.Line != 3210 || !errors.Is(err, bad) {
		t.Fatalf("error = %v, want line 3210", err)
	}
	// Everything written is whole lines before the bad one, in order.
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for i, l := range lines {
		if l != fmt.Sprintf("line%d", i+1) {
			t.Fatalf("output line %d = %q", i+1, l)
		}
	}
	if len(lines) >= 3210 {
		t.Errorf("wrote %d lines, past the failing one", len(lines))
	}

	long := "short\n" + strings.Repeat("y", 5000) + "\nshort\n"
	_, err = ndjson.Transform(context.Background(), strings.NewReader(long), &out, upper,
		ndjson.Options{Workers: 2, MaxLine: 4096})
	if !errors.As(err, &le) || le.Line != 2 || !errors.Is(err, ndjson.ErrLineTooLong) {
		t.Errorf("long line error = %v", err)
	}
	// A line of exactly MaxLine bytes is fine.
	exact := strings.Repeat("z", 4096) + "\n"
	out.Reset()
	if _, err := ndjson.Transform(context.Background(), strings.NewReader(exact), &out, upper,
		ndjson.Options{MaxLine: 4096}); err != nil || out.Len() != 4097 {
		t.Errorf("line of MaxLine bytes: %v (%d bytes out)", err, out.Len())
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	if f.n > 2 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestTransformWriteErrorAndCancel(t *testing.T) {
	in := strings.Repeat("abcdefgh\n", 100000)
	_, err := ndjson.Transform(context.Background(), strings.NewReader(in), &failWriter{}, upper,
		ndjson.Options{Workers: 2, BatchBytes: 1000})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("write error = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = ndjson.Transform(ctx, strings.NewReader(in), &bytes.Buffer{}, upper, ndjson.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled error = %v", err)
	}
}

func TestTransformEncode(t *testing.T) {
	in := strings.Repeat("abc\n", 1000)
	var out bytes.Buffer
	enc := func(w int, out, dst []byte) []byte {
		dst = append(dst, '[')
		dst = append(dst, out...)
		return append(dst, ']')
	}
	st, err := ndjson.Transform(context.Background(), strings.NewReader(in), &out, upper,
		ndjson.Options{Workers: 2, BatchBytes: 400, Encode: enc})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if n := strings.Count(got, "["); n != 10 || strings.Count(got, "ABC\n") != 1000 || got[0] != '[' {
		t.Errorf("%d batches encoded; output starts %q", n, got[:10])
	}
	if st.RawOut != 4000 || st.BytesOut != int64(len(got)) {
		t.Errorf("stats %+v", st)
	}
}

func BenchmarkTransform(b *testing.B) {
	in := []byte(strings.Repeat(`{"resourceType":"Patient","id":"x","name":[{"family":"f"}]}`+"\n", 20000))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	copyFn := func(w int, n int64, line, dst []byte) ([]byte, error) { return append(dst, line...), nil }
	for i := 0; i < b.N; i++ {
		if _, err := ndjson.Transform(context.Background(), bytes.NewReader(in), &bytes.Buffer{}, copyFn, ndjson.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTransformTrimsLines(t *testing.T) {
	in := "  {\"a\":1} \n\t{\"b\":2}\n{\"c\":3}\r\n"
	var out bytes.Buffer
	fn := func(w int, n int64, line, dst []byte) ([]byte, error) { return append(dst, line...), nil }
	if _, err := ndjson.Transform(context.Background(), strings.NewReader(in), &out, fn, ndjson.Options{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	if want := "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"; out.String() != want {
		t.Errorf("out %q, want %q", out.String(), want)
	}
}
