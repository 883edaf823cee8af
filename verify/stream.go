package verify

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Stream is an io.Writer that splits a COPY TO stream into rows and folds
// each row into a Sum. It never buffers more than a few bytes of its own: a
// row that spans writes is hashed incrementally.
//
// Text rows end at a newline (COPY escapes newlines inside values). Binary
// rows are parsed from their field count and field lengths, so message
// boundaries do not matter; the row hash covers the field count, every length
// word and the value bytes, which keeps NULL, empty and neighbouring values
// apart.
type Stream struct {
	binary bool
	hash   bool
	sum    Sum
	bytes  int64

	h       rowHash // the row hash; also holds a row that spans writes
	partial bool    // h holds the start of the current row

	// binary parsing state
	state  int
	small  [4]byte // an integer split across writes
	nSmall int
	skip   int64 // header-extension bytes still to skip
	fields int   // fields left in the current row
	left   int64 // bytes left in the current field
}

const (
	stHeader = iota // 11-byte signature, flags, extension length
	stHeaderExt
	stTuple     // 16-bit field count, or -1 for the trailer
	stFieldLen  // 32-bit length, -1 for NULL
	stFieldData // value bytes
	stDone
)

var binarySignature = []byte("PGCOPY\n\377\r\n\x00")

// NewStream returns a Stream for a text (binary=false) or binary COPY stream
// that hashes rows with alg; with alg empty it only counts rows.
func NewStream(binary bool, alg Algorithm) *Stream {
	s := &Stream{binary: binary, hash: alg != ""}
	if s.hash {
		s.h = newRowHash(alg)
	}
	return s
}

// Sum returns the figures of the rows seen so far, and an error when the
// stream stopped inside a row (or, for binary, before its trailer).
func (s *Stream) Sum() (Sum, error) {
	if s.binary && s.state != stDone {
		return s.sum, errors.New("binary COPY stream ended before its trailer")
	}
	if !s.binary && s.partial {
		return s.sum, errors.New("text COPY stream ended inside a row")
	}
	return s.sum, nil
}

// Bytes is the number of stream bytes seen.
func (s *Stream) Bytes() int64 { return s.bytes }

// Write consumes part of the stream. It fails only on a malformed binary
// stream.
func (s *Stream) Write(p []byte) (int, error) {
	s.bytes += int64(len(p))
	var err error
	if s.binary {
		err = s.writeBinary(p)
	} else {
		s.writeText(p)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Stream) writeText(p []byte) {
	if !s.hash {
		s.sum.Rows += int64(bytes.Count(p, []byte{'\n'}))
		if len(p) > 0 {
			s.partial = p[len(p)-1] != '\n'
		}
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.h.part(p)
			s.partial = true
			return
		}
		s.endRow(p[:i+1])
		p = p[i+1:]
	}
}

// endRow folds a row whose last bytes are tail into the sum.
func (s *Stream) endRow(tail []byte) {
	if !s.hash {
		s.sum.Rows++
		s.partial = false
		return
	}
	if s.partial {
		s.h.part(tail)
		s.sum.addRow(s.h.finish())
		s.partial = false
		return
	}
	s.sum.addRow(s.h.whole(tail))
}

// wholeRow returns the length of the binary row that starts p, when all of
// it is in p, or -1. It checks the framing as the state machine does.
func wholeRow(p []byte) (int, error) {
	if len(p) < 2 {
		return -1, nil
	}
	n := int16(binary.BigEndian.Uint16(p))
	if n < 0 {
		return -1, nil // the trailer, or a bad count: the state machine decides
	}
	at := 2
	for range n {
		if len(p)-at < 4 {
			return -1, nil
		}
		l := int32(binary.BigEndian.Uint32(p[at:]))
		at += 4
		if l < -1 {
			return 0, errors.New("binary COPY stream: bad field length")
		}
		if l > 0 {
			if int64(len(p)-at) < int64(l) {
				return -1, nil
			}
			at += int(l)
		}
	}
	return at, nil
}

// need gathers an n-byte big-endian integer that may be split across writes.
// It returns the bytes consumed and whether the integer is complete.
func (s *Stream) need(p []byte, n int) (int, bool) {
	c := copy(s.small[s.nSmall:n], p)
	s.nSmall += c
	return c, s.nSmall == n
}

func (s *Stream) writeBinary(p []byte) error {
	rowStart := 0 // where the current row's unhashed bytes begin in p
	inRow := func() bool { return s.state == stFieldLen || s.state == stFieldData }
	for i := 0; i < len(p); {
		switch s.state {
		case stHeader:
			// Signature (11), flags (4), extension length (4): gather 19 bytes
			// through a 4-byte window would be awkward, so check the
			// signature byte by byte.
			if s.skip < int64(len(binarySignature)) {
				if p[i] != binarySignature[s.skip] {
					return errors.New("not a binary COPY stream: bad signature")
				}
				s.skip++
				i++
				continue
			}
			if s.skip < 15 { // flags: not needed
				s.skip++
				i++
				continue
			}
			c, ok := s.need(p[i:], 4)
			i += c
			if ok {
				s.skip = int64(binary.BigEndian.Uint32(s.small[:4]))
				s.nSmall = 0
				s.state = stHeaderExt
			}
		case stHeaderExt:
			c := min(int64(len(p)-i), s.skip)
			i += int(c)
			s.skip -= c
			if s.skip == 0 {
				s.state = stTuple
				rowStart = i
			}
		case stTuple:
			if s.nSmall == 0 {
				rowStart = i
				// pgx hands COPY TO over a row per write: hash a row that
				// is whole here in one call.
				n, err := wholeRow(p[i:])
				if err != nil {
					return err
				}
				if n > 0 {
					s.endRow(p[i : i+n])
					i += n
					rowStart = i
					continue
				}
			}
			c, ok := s.need(p[i:], 2)
			i += c
			if !ok {
				break
			}
			s.nSmall = 0
			n := int16(binary.BigEndian.Uint16(s.small[:2]))
			switch {
			case n == -1:
				// The trailer, possibly split across writes: not a row.
				if s.partial && s.hash {
					s.h.finish() // drop the trailer's first byte
				}
				s.partial = false
				s.state = stDone
			case n < 0:
				return errors.New("binary COPY stream: negative field count")
			case n == 0:
				s.endRow(p[rowStart:i])
			default:
				s.fields = int(n)
				s.state = stFieldLen
			}
		case stFieldLen:
			c, ok := s.need(p[i:], 4)
			i += c
			if !ok {
				break
			}
			s.nSmall = 0
			n := int32(binary.BigEndian.Uint32(s.small[:4]))
			if n < -1 {
				return errors.New("binary COPY stream: bad field length")
			}
			if n > 0 {
				s.left = int64(n)
				s.state = stFieldData
				break
			}
			s.fieldDone(p, &rowStart, i)
		case stFieldData:
			c := min(int64(len(p)-i), s.left)
			i += int(c)
			s.left -= c
			if s.left == 0 {
				s.fieldDone(p, &rowStart, i)
			}
		case stDone:
			return errors.New("binary COPY stream: data after the trailer")
		}
	}
	// A row (or its field-count word) continues in the next write.
	if inRow() || (s.state == stTuple && s.nSmall > 0) {
		if s.hash {
			s.h.part(p[rowStart:])
		}
		s.partial = true
	}
	return nil
}

// fieldDone ends a field that finished at p[:end]; after the row's last field
// it folds the row into the sum.
func (s *Stream) fieldDone(p []byte, rowStart *int, end int) {
	s.fields--
	if s.fields > 0 {
		s.state = stFieldLen
		return
	}
	s.endRow(p[*rowStart:end])
	*rowStart = end
	s.state = stTuple
}
