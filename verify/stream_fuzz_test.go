package verify

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refRows splits a well-formed COPY stream into the bytes of each row the
// simplest way: text rows up to and including their newline, binary rows
// from their field count to their last value byte.
func refRows(t testing.TB, bin bool, data []byte) [][]byte {
	t.Helper()
	var rows [][]byte
	if !bin {
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			rows = append(rows, data[:i+1])
			data = data[i+1:]
		}
		return rows
	}
	at := len(binarySignature) + 4
	at += 4 + int(binary.BigEndian.Uint32(data[at:]))
	for {
		n := int16(binary.BigEndian.Uint16(data[at:]))
		if n == -1 {
			return rows
		}
		start := at
		at += 2
		for range n {
			l := int32(binary.BigEndian.Uint32(data[at:]))
			at += 4
			if l > 0 {
				at += int(l)
			}
		}
		rows = append(rows, data[start:at])
	}
}

func refSum(t testing.TB, bin bool, alg Algorithm, data []byte) Sum {
	var s Sum
	for _, r := range refRows(t, bin, data) {
		h := newRowHash(alg)
		s.addRow(h.whole(r))
	}
	return s
}

// randomCopy builds a random binary or text COPY stream of a few rows:
// zero-column rows, NULLs, empty values, values holding the bytes of
// framing (newlines escaped in text, as COPY writes them), and a header
// extension of random length.
func randomCopy(r *rand.Rand, bin bool) []byte {
	var b bytes.Buffer
	nrows := r.IntN(6)
	if bin {
		b.Write(binarySignature)
		b.Write([]byte{0, 0, 0, 0})
		ext := r.IntN(4)
		binary.Write(&b, binary.BigEndian, int32(ext))
		for range ext {
			b.WriteByte(byte(r.IntN(256)))
		}
	}
	vals := [][]byte{nil, {}, {0xff, 0xff}, {0, 0}, []byte("\\.\n"), []byte("a\r\n"), {0xff, 0xff, 0xff, 0xff}}
	for range nrows {
		ncols := r.IntN(4)
		if bin {
			binary.Write(&b, binary.BigEndian, int16(ncols))
		}
		for c := range ncols {
			var v []byte
			if r.IntN(3) == 0 {
				v = vals[r.IntN(len(vals))]
			} else {
				v = make([]byte, r.IntN(6))
				for i := range v {
					v[i] = byte(r.IntN(256))
				}
			}
			if bin {
				if v == nil {
					binary.Write(&b, binary.BigEndian, int32(-1))
				} else {
					binary.Write(&b, binary.BigEndian, int32(len(v)))
					b.Write(v)
				}
				continue
			}
			if c > 0 {
				b.WriteByte('\t')
			}
			if v == nil {
				b.WriteString(`\N`)
				continue
			}
			for _, x := range v { // COPY's text escapes
				switch x {
				case '\n':
					b.WriteString(`\n`)
				case '\r':
					b.WriteString(`\r`)
				case '\t':
					b.WriteString(`\t`)
				case '\\':
					b.WriteString(`\\`)
				default:
					b.WriteByte(x)
				}
			}
		}
		if !bin {
			b.WriteByte('\n')
		}
	}
	if bin {
		binary.Write(&b, binary.BigEndian, int16(-1))
	}
	return b.Bytes()
}

// feed writes data to a Stream in the chunks cuts mark.
func feed(t testing.TB, bin bool, alg Algorithm, data []byte, cuts []int) Sum {
	t.Helper()
	s := NewStream(bin, alg)
	prev := 0
	for _, c := range append(cuts, len(data)) {
		if _, err := s.Write(data[prev:c]); err != nil {
			t.Fatalf("write: %v", err)
		}
		prev = c
	}
	sum, err := s.Sum()
	if err != nil {
		t.Fatalf("sum: %v", err)
	}
	return sum
}

// A Stream's figures equal those of a reference parser however the stream
// is cut into writes: whole, at every byte, at random places.
func TestStreamMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 3000 {
		bin := iter%2 == 0
		data := randomCopy(r, bin)
		for _, alg := range []Algorithm{XXH3, SHA256} {
			want := refSum(t, bin, alg, data)
			every := make([]int, len(data))
			for i := range every {
				every[i] = i
			}
			var random []int
			for i := range data {
				if r.IntN(4) == 0 {
					random = append(random, i)
				}
			}
			for _, cuts := range [][]int{nil, every, random} {
				if got := feed(t, bin, alg, data, cuts); got != want {
					t.Fatalf("binary=%v %s cuts %v of %q: %v, want %v", bin, alg, cuts, data, got, want)
				}
			}
		}
		if got := feed(t, bin, "", data, nil); got.Rows != int64(len(refRows(t, bin, data))) {
			t.Fatalf("count only: %d rows", got.Rows)
		}
	}
}

// A stream that stops anywhere before its end is refused (binary: before
// its trailer; text: inside a row).
func TestStreamEndsEarly(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 500 {
		bin := iter%2 == 0
		data := randomCopy(r, bin)
		for cut := range len(data) {
			s := NewStream(bin, XXH3)
			s.Write(data[:cut])
			_, err := s.Sum()
			atRowEnd := !bin && (cut == 0 || data[cut-1] == '\n')
			if (err == nil) != atRowEnd {
				t.Fatalf("binary=%v cut at %d of %q: err %v", bin, cut, data, err)
			}
		}
	}
}

func FuzzStream(f *testing.F) {
	f.Add(uint64(1), uint64(2), true)
	f.Add(uint64(5), uint64(7), false)
	f.Fuzz(func(t *testing.T, a, b uint64, bin bool) {
		r := rand.New(rand.NewPCG(a, b))
		data := randomCopy(r, bin)
		want := refSum(t, bin, XXH3, data)
		var cuts []int
		for i := range data {
			if r.IntN(3) == 0 {
				cuts = append(cuts, i)
			}
		}
		if got := feed(t, bin, XXH3, data, cuts); got != want {
			t.Fatalf("cuts %v of %q: %v, want %v", cuts, data, got, want)
		}
	})
}
