package redact

import (
	"context"
	"fmt"
	"log/slog"
)

// handler passes every record to next with passwords removed from the
// message and from every attribute's value.
type handler struct {
	next    slog.Handler
	secrets []string
}

var _ slog.Handler = handler{}

// NewHandler wraps next so that nothing logged through it can carry a
// password: the message and every attribute (errors, Stringers and any
// other value as their text, groups recursively) pass through Passwords
// with secrets.
func NewHandler(next slog.Handler, secrets ...string) slog.Handler {
	return handler{next: next, secrets: secrets}
}

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, Passwords(r.Message, h.secrets...), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return handler{next: h.next.WithAttrs(clean), secrets: h.secrets}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{next: h.next.WithGroup(name), secrets: h.secrets}
}

func (h handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Passwords(v.String(), h.secrets...))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]slog.Attr, len(group))
		for i, g := range group {
			clean[i] = h.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			s = fmt.Sprintf("%+v", x)
		}
		return slog.String(a.Key, Passwords(s, h.secrets...))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
