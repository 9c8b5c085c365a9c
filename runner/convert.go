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

// fromTengoChecked turns a Tengo object into a value AppendValue writes,
// in one walk that also refuses a value that holds itself (errCycle), one
// larger than maxValueBytes (as measure counts) and one nested deeper than
// tree.MaxValueNesting.
func fromTengoChecked(o tengo.Object) (any, error) {
	c := converter{budget: maxValueBytes}
	return c.conv(o, 0)
}

type converter struct {
	budget int            // bytes left
	onPath []tengo.Object // the containers being converted
}

// take counts n bytes against the budget.
func (c *converter) take(n int) error {
	if c.budget -= n; c.budget < 0 {
		return fmt.Errorf("the value is larger than %d bytes", maxValueBytes)
	}
	return nil
}

func (c *converter) conv(o tengo.Object, depth int) (any, error) {
	if depth > tree.MaxValueNesting {
		return nil, fmt.Errorf("value nested deeper than %d", tree.MaxValueNesting)
	}
	if err := c.take(16); err != nil {
		return nil, err
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
		return x.Value, c.take(len(x.Value))
	case *tengo.Char:
		return string(x.Value), nil
	case *tengo.Bytes:
		return x.Value, c.take(len(x.Value))
	case *tengo.Time:
		return float64(x.Value.UnixNano()) / 1e9, nil
	case *tengo.Error:
		return c.conv(x.Value, depth+1)
	case *tengo.Array, *tengo.ImmutableArray, *tengo.Map, *tengo.ImmutableMap:
		for _, p := range c.onPath {
			if p == o {
				return nil, errCycle
			}
		}
		c.onPath = append(c.onPath, o)
		defer func() { c.onPath = c.onPath[:len(c.onPath)-1] }()
		switch x := o.(type) {
		case *tengo.Array:
			return c.array(x.Value, depth)
		case *tengo.ImmutableArray:
			return c.array(x.Value, depth)
		case *tengo.Map:
			return c.dict(x.Value, depth)
		case *tengo.ImmutableMap:
			return c.dict(x.Value, depth)
		}
	}
	return nil, fmt.Errorf("a %s cannot be stored", o.TypeName())
}

func (c *converter) array(a []tengo.Object, depth int) (any, error) {
	out := make([]any, len(a))
	for i, e := range a {
		v, err := c.conv(e, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (c *converter) dict(m map[string]tengo.Object, depth int) (any, error) {
	out := make(map[string]any, len(m))
	for k, e := range m {
		if err := c.take(len(k)); err != nil {
			return nil, err
		}
		v, err := c.conv(e, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}
