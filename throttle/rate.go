package throttle

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/time/rate"
)

// Rate caps the bytes per second streamed across all units: a token bucket
// (golang.org/x/time/rate) that every stream's writer draws from. Its burst
// is a tenth of a second's worth (at least 64 KiB), so the cap holds within
// a few percent over any second or more.
type Rate struct{ l *rate.Limiter }

// NewRate caps at bytesPerSecond.
func NewRate(bytesPerSecond float64) *Rate {
	burst := max(int(bytesPerSecond/10), 64<<10)
	return &Rate{l: rate.NewLimiter(rate.Limit(bytesPerSecond), burst)}
}

// BytesPerSecond is the cap.
func (r *Rate) BytesPerSecond() float64 { return float64(r.l.Limit()) }

// Writer paces writes to w by the cap; a write waits for its bytes (in
// pieces of at most the burst) or for ctx.
func (r *Rate) Writer(ctx context.Context, w io.Writer) io.Writer {
	return &paced{ctx: ctx, r: r, w: w}
}

type paced struct {
	ctx context.Context
	r   *Rate
	w   io.Writer
}

func (p *paced) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), p.r.l.Burst())
		if err := p.r.l.WaitN(p.ctx, n); err != nil {
			return written, err
		}
		m, err := p.w.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

var rateRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([kKMGT]i?)?B(?:/s)?$`)

// ParseRate reads --max-rate: bytes per second such as 50MB/s, 512KiB/s,
// 1.5GB (the /s may be left out; KB, MB, GB are powers of 1000, KiB, MiB,
// GiB of 1024).
func ParseRate(s string) (float64, error) {
	m := rateRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("--max-rate %q: want a rate such as 50MB/s or 512KiB/s", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("--max-rate %q: must be positive", s)
	}
	mult := map[string]float64{"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
		"ki": 1 << 10, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}[m[2]]
	return v * mult, nil
}
