package runner

import (
	"fmt"
	"math"
	"math/big"

	"github.com/d5/tengo/v2"

	"github.com/edgekv/edgekv/tree"
)

// toTengo turns a value DecodeValue returned into a Tengo object: a Path
// becomes its text ("a.b"), a map with keys that are not strings a map
// keyed by their text, an integer beyond int64 or an extension a string.
func toTengo(v any) tengo.Object {
	switch x := v.(type) {
	case nil:
		return tengo.UndefinedValue
	case bool:
		if x {
			return tengo.TrueValue
		}
		return tengo.FalseValue
	case int64:
		return &tengo.Int{Value: x}
	case uint64:
		return &tengo.String{Value: fmt.Sprint(x)}
	case float64:
		return &tengo.Float{Value: x}
	case string:
		return &tengo.String{Value: x}
	case []byte:
		return &tengo.Bytes{Value: x}
	case []any:
		arr := make([]tengo.Object, len(x))
		for i, e := range x {
			arr[i] = toTengo(e)
		}
		return &tengo.Array{Value: arr}
	case map[string]any:
		m := make(map[string]tengo.Object, len(x))
		for k, e := range x {
			m[k] = toTengo(e)
		}
		return &tengo.Map{Value: m}
	case tree.Map:
		m := make(map[string]tengo.Object, len(x))
		for _, it := range x {
			m[fmt.Sprint(it.Key)] = toTengo(it.Value)
		}
		return &tengo.Map{Value: m}
	case tree.Path:
		return &tengo.String{Value: x.String()}
	case *big.Int:
		return &tengo.String{Value: x.String()}
	}
	return &tengo.String{Value: fmt.Sprint(v)}
}

// fromTengoChecked is fromTengo of a value measured first: no cycle, at
// most maxValueBytes.
func fromTengoChecked(o tengo.Object) (any, error) {
	if _, err := measure(o, maxValueBytes); err != nil {
		return nil, err
	}
	return fromTengo(o, 0)
}

// fromTengo turns a Tengo object into a value AppendValue writes. depth
// bounds nesting (a map may hold itself); callers measure first
// (fromTengoChecked).
func fromTengo(o tengo.Object, depth int) (any, error) {
	if depth > tree.MaxValueNesting {
		return nil, fmt.Errorf("value nested deeper than %d", tree.MaxValueNesting)
	}
	switch x := o.(type) {
	case *tengo.Undefined:
		return nil, nil
	case *tengo.Bool:
		return !x.IsFalsy(), nil
	case *tengo.Int:
		return x.Value, nil
	case *tengo.Float:
		if math.IsNaN(x.Value) {
			return nil, fmt.Errorf("NaN cannot be stored")
		}
		return x.Value, nil
	case *tengo.String:
		return x.Value, nil
	case *tengo.Char:
		return string(x.Value), nil
	case *tengo.Bytes:
		return x.Value, nil
	case *tengo.Time:
		return float64(x.Value.UnixNano()) / 1e9, nil
	case *tengo.Array:
		return fromTengoArray(x.Value, depth)
	case *tengo.ImmutableArray:
		return fromTengoArray(x.Value, depth)
	case *tengo.Map:
		return fromTengoMap(x.Value, depth)
	case *tengo.ImmutableMap:
		return fromTengoMap(x.Value, depth)
	case *tengo.Error:
		return fromTengo(x.Value, depth+1)
	}
	return nil, fmt.Errorf("a %s cannot be stored", o.TypeName())
}

func fromTengoArray(a []tengo.Object, depth int) (any, error) {
	out := make([]any, len(a))
	for i, e := range a {
		v, err := fromTengo(e, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func fromTengoMap(m map[string]tengo.Object, depth int) (any, error) {
	out := make(map[string]any, len(m))
	for k, e := range m {
		v, err := fromTengo(e, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}
