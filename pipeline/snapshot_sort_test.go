package pipeline

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSorterSpillsAndMerges(t *testing.T) {
	for _, limit := range []int{64, 1 << 10, 1 << 20} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			s := newSorter(t.TempDir(), limit)
			defer s.close()
			var want []string
			for i := 0; i < 5000; i++ {
				k := fmt.Sprintf("T\x00%04d", rng.IntN(2000))
				data := make([]byte, rng.IntN(200))
				for j := range data {
					data[j] = byte('a' + rng.IntN(26))
				}
				r := record{key: []byte(k), seq: uint64(i)<<20 | 1<<47, data: data, kind: byte(i % 2)}
				if err := s.add(&r); err != nil {
					t.Fatal(err)
				}
				want = append(want, fmt.Sprintf("%s|%010d|%d|%s", k, 1<<32-i, i%2, data))
			}
			slices.Sort(want)
			m, err := s.sorted()
			if err != nil {
				t.Fatal(err)
			}
			defer m.close()
			var got []string
			for {
				r, err := m.next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%s|%010d|%d|%s", r.key, 1<<32-int((r.seq&^(1<<47))>>20), r.kind, r.data))
			}
			if limit < 1<<20 && s.spills < 2 {
				t.Errorf("%d spills", s.spills)
			}
			if !slices.Equal(got, want) {
				n := 0
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						n++
					}
				}
				t.Fatalf("%d records, want %d; %d differ", len(got), len(want), n)
			}
		})
	}
}
