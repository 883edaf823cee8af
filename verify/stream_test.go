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

func sumOf(t *testing.T, bin, hash bool, chunks ...[]byte) Sum {
	t.Helper()
	s := NewStream(bin, hash)
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
			for _, hash := range []bool{true, false} {
				whole := sumOf(t, c.bin, hash, c.data)
				if whole.Rows != c.rows {
					t.Fatalf("rows = %d, want %d", whole.Rows, c.rows)
				}
				for i := 0; i <= len(c.data); i++ {
					for j := i; j <= len(c.data); j++ {
						got := sumOf(t, c.bin, hash, c.data[:i], c.data[i:j], c.data[j:])
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
	a := sumOf(t, false, true, []byte("x\ny\n"))
	b := sumOf(t, false, true, []byte("y\nx\n"))
	if a != b {
		t.Fatalf("order changed the sum: %v vs %v", a, b)
	}
	// XOR would make "x x" equal to the empty set plus count; a sum must not.
	dup := sumOf(t, false, true, []byte("x\nx\n"))
	other := sumOf(t, false, true, []byte("y\ny\n"))
	if dup.A == other.A && dup.B == other.B {
		t.Fatal("duplicated rows cancelled out")
	}
	if dup.A == 0 && dup.B == 0 {
		t.Fatal("checksum of two rows is zero")
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
	seen := map[Sum]int{}
	for i, v := range variants {
		s := sumOf(t, true, true, binaryCopy(v))
		if j, ok := seen[s]; ok {
			t.Fatalf("variants %d and %d hash alike", i, j)
		}
		seen[s] = i
	}
}

func TestStreamTruncated(t *testing.T) {
	s := NewStream(false, true)
	s.Write([]byte("1\n2"))
	if _, err := s.Sum(); err == nil {
		t.Fatal("text stream ending mid-row accepted")
	}
	b := binaryCopy([][]byte{[]byte("a")})
	s = NewStream(true, true)
	s.Write(b[:len(b)-2])
	if _, err := s.Sum(); err == nil {
		t.Fatal("binary stream without trailer accepted")
	}
	s = NewStream(true, true)
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

func BenchmarkStreamText(b *testing.B) {
	row := []byte("12345\t1\t0\t                                                                                    \n")
	buf := bytes.Repeat(row, 65536/len(row))
	s := NewStream(false, true)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		s.Write(buf)
	}
}
