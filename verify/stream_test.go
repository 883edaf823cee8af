package verify

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// binaryCopy builds a binary COPY stream; a nil field is NULL.
func binaryCopy(rows ...[][]byte) []byte {
	var b bytes.Buffer
	b.Write(binarySignature)
	b.Write([]byte{0, 0, 0, 0}) // flags
	b.Write([]byte{0, 0, 0, 3}) // extension length
	b.Write([]byte{9, 9, 9})    // extension
	for _, r := range rows {
		binary.Write(&b, binary.BigEndian, int16(len(r)))
		for _, f := range r {
			if f == nil {
				binary.Write(&b, binary.BigEndian, int32(-1))
				continue
			}
			binary.Write(&b, binary.BigEndian, int32(len(f)))
			b.Write(f)
		}
	}
	binary.Write(&b, binary.BigEndian, int16(-1))
	return b.Bytes()
}

func sumOf(t *testing.T, bin bool, alg Algorithm, chunks ...[]byte) Sum {
	t.Helper()
	s := NewStream(bin, alg)
	for _, c := range chunks {
		if _, err := s.Write(c); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	sum, err := s.Sum()
	if err != nil {
		t.Fatalf("sum: %v", err)
	}
	return sum
}

// Every way of splitting a stream into writes gives the same figures.
func TestStreamSplitAnywhere(t *testing.T) {
	cases := []struct {
		name string
		bin  bool
		data []byte
		rows int64
	}{
		{"text", false, []byte("1\tabc\n2\t\\N\n3\t\n"), 3},
		{"text-empty", false, nil, 0},
		{"binary", true, binaryCopy([][]byte{[]byte("a"), nil}, [][]byte{[]byte(""), []byte("bcdef")}, [][]byte{}), 3},
		{"binary-empty", true, binaryCopy(), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, alg := range []Algorithm{XXH3, SHA256, ""} {
				whole := sumOf(t, c.bin, alg, c.data)
				if whole.Rows != c.rows {
					t.Fatalf("rows = %d, want %d", whole.Rows, c.rows)
				}
				for i := 0; i <= len(c.data); i++ {
					for j := i; j <= len(c.data); j++ {
						got := sumOf(t, c.bin, alg, c.data[:i], c.data[i:j], c.data[j:])
						if got != whole {
							t.Fatalf("split at %d,%d: %v, want %v", i, j, got, whole)
						}
					}
				}
			}
		})
	}
}

func TestStreamOrderIndependentDuplicateSensitive(t *testing.T) {
	for _, alg := range []Algorithm{XXH3, SHA256} {
		a := sumOf(t, false, alg, []byte("x\ny\n"))
		b := sumOf(t, false, alg, []byte("y\nx\n"))
		if a != b {
			t.Fatalf("%s: order changed the sum: %v vs %v", alg, a, b)
		}
		// XOR would make "x x" equal to the empty set plus count; a sum must not.
		dup := sumOf(t, false, alg, []byte("x\nx\n"))
		other := sumOf(t, false, alg, []byte("y\ny\n"))
		if dup.A == other.A && dup.B == other.B {
			t.Fatalf("%s: duplicated rows cancelled out", alg)
		}
		if dup.A == 0 && dup.B == 0 {
			t.Fatalf("%s: checksum of two rows is zero", alg)
		}
	}
	if x, s := sumOf(t, false, XXH3, []byte("x\n")), sumOf(t, false, SHA256, []byte("x\n")); x == s {
		t.Fatal("xxh3 and sha256 gave one checksum")
	}
}

// NULL, empty and a shifted value must all hash differently.
func TestBinaryRowEncodingUnambiguous(t *testing.T) {
	variants := [][][]byte{
		{nil, []byte("ab")},
		{[]byte(""), []byte("ab")},
		{[]byte("a"), []byte("b")},
		{[]byte("ab"), []byte("")},
		{[]byte("ab"), nil},
	}
	for _, alg := range []Algorithm{XXH3, SHA256} {
		seen := map[Sum]int{}
		for i, v := range variants {
			s := sumOf(t, true, alg, binaryCopy(v))
			if j, ok := seen[s]; ok {
				t.Fatalf("%s: variants %d and %d hash alike", alg, i, j)
			}
			seen[s] = i
		}
	}
}

// Every single-bit change of a row changes the checksum.
func TestStreamOneBitChange(t *testing.T) {
	row := []byte("12345\tsome text\t2024-01-01 00:00:00+00\n")
	for _, alg := range []Algorithm{XXH3, SHA256} {
		base := sumOf(t, false, alg, row)
		for i := 0; i < len(row)-1; i++ {
			for bit := range 8 {
				c := bytes.Clone(row)
				c[i] ^= 1 << bit
				if c[i] == '\n' {
					continue
				}
				if got := sumOf(t, false, alg, c); got == base {
					t.Fatalf("%s: flipping bit %d of byte %d left the checksum", alg, bit, i)
				}
			}
		}
	}
}

func TestStreamTruncated(t *testing.T) {
	s := NewStream(false, XXH3)
	s.Write([]byte("1\n2"))
	if _, err := s.Sum(); err == nil {
		t.Fatal("text stream ending mid-row accepted")
	}
	b := binaryCopy([][]byte{[]byte("a")})
	s = NewStream(true, XXH3)
	s.Write(b[:len(b)-2])
	if _, err := s.Sum(); err == nil {
		t.Fatal("binary stream without trailer accepted")
	}
	s = NewStream(true, XXH3)
	if _, err := s.Write([]byte("PGCOPX\n")); err == nil {
		t.Fatal("bad signature accepted")
	}
}

func TestCompare(t *testing.T) {
	src := Sum{Rows: 2, A: 1, B: 2}
	if err := Compare("u", Checksum, src, src); err != nil {
		t.Fatal(err)
	}
	if err := Compare("u", Checksum, src, Sum{Rows: 2, A: 1, B: 3}); err == nil {
		t.Fatal("checksum difference not reported")
	}
	if err := Compare("u", Count, src, Sum{Rows: 2}); err != nil {
		t.Fatal("count mode compared checksums")
	}
	if err := Compare("u", Count, src, Sum{Rows: 3}); err == nil {
		t.Fatal("count difference not reported")
	}
}

func BenchmarkStream(b *testing.B) {
	text := []byte("12345\t1\t0\t                                                                                    \n")
	fields := [][]byte{{0, 0, 0x30, 0x39}, {0, 0, 0, 1}, {0, 0, 0, 0}, bytes.Repeat([]byte(" "), 84)}
	bin := binaryCopy(fields)
	row := bin[len(binarySignature)+4+4+3 : len(bin)-2] // one binary row, as pgx hands it over
	for _, alg := range []Algorithm{XXH3, SHA256} {
		b.Run("text/"+string(alg), func(b *testing.B) {
			s := NewStream(false, alg)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				s.Write(text)
			}
		})
		b.Run("binary/"+string(alg), func(b *testing.B) {
			s := NewStream(true, alg)
			s.Write(bin[:len(binarySignature)+4+4+3])
			b.SetBytes(int64(len(row)))
			for b.Loop() {
				s.Write(row)
			}
		})
	}
}
