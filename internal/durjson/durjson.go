package durjson

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
)

var durationType = reflect.TypeFor[time.Duration]()

// layout is how one struct type is re-encoded: the fields of a struct type
// built for it, each taken from a field of the original, as is or in
// seconds.
type layout struct {
	typ    reflect.Type
	fields []source
}

type source struct {
	index   int  // the original field
	seconds bool // this field is that duration in seconds
}

var layouts sync.Map // reflect.Type → *layout, or error

// Marshal encodes v, a struct, with every exported time.Duration field
// also in seconds (see the package comment). Anything else is encoded as
// encoding/json does.
func Marshal(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Struct {
		return json.Marshal(v)
	}
	l, err := layoutOf(rv.Type())
	if err != nil {
		return nil, err
	}
	out := reflect.New(l.typ).Elem()
	for i, s := range l.fields {
		f := rv.Field(s.index)
		if s.seconds {
			out.Field(i).SetFloat(time.Duration(f.Int()).Seconds())
		} else {
			out.Field(i).Set(f)
		}
	}
	return json.Marshal(out.Interface())
}

func layoutOf(t reflect.Type) (*layout, error) {
	if l, ok := layouts.Load(t); ok {
		if err, bad := l.(error); bad {
			return nil, err
		}
		return l.(*layout), nil
	}
	l, err := build(t)
	if err != nil {
		layouts.Store(t, err)
		return nil, err
	}
	layouts.Store(t, l)
	return l, nil
}

func build(t reflect.Type) (*layout, error) {
	l := &layout{}
	var fields []reflect.StructField
	add := func(name, opts string, typ reflect.Type, src source) {
		tag := name
		if opts != "" {
			tag += "," + opts
		}
		fields = append(fields, reflect.StructField{
			Name: fmt.Sprintf("F%d", len(fields)),
			Type: typ,
			Tag:  reflect.StructTag(`json:"` + strings.ReplaceAll(tag, `"`, `\"`) + `"`),
		})
		l.fields = append(l.fields, src)
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			// encoding/json inlines embedded structs; a struct type
			// built here cannot reproduce that faithfully.
			return nil, fmt.Errorf("durjson: %s embeds %s, which durjson does not support", t, f.Type)
		}
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		add(name, opts, f.Type, source{index: i})
		if f.Type == durationType {
			add(strings.TrimSuffix(name, "_ns")+"_s", omit(opts), reflect.TypeFor[float64](), source{index: i, seconds: true})
		}
	}
	l.typ = reflect.StructOf(fields)
	return l, nil
}

// omit keeps the options of a duration's tag that apply to its seconds
// too: omitempty and omitzero (not string).
func omit(opts string) string {
	var keep []string
	for o := range strings.SplitSeq(opts, ",") {
		if o == "omitempty" || o == "omitzero" {
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ",")
}
