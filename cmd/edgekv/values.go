package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/tinylib/msgp/msgp"
	"go.yaml.in/yaml/v3"

	"github.com/edgekv/edgekv/tree"
)

// Values on the command line. Output: YAML or JSON of the decoded value,
// with MoaT-KV's extension types as MoaT's CLI shows them in YAML: a Path
// as !P a.b (its text syntax), a marked path as !mP {mark, path}, a big
// integer as a plain integer, bytes as base64 (!!binary in YAML), other
// extensions as !ext {type, data}. In JSON, which has no tags, a Path is
// {"!P": "a.b"}, a marked path {"!mP": {...}}, an extension
// {"!ext": {...}}. Input (set, code and job commands): YAML, with !P for
// paths and !!binary for bytes.

// plain decodes a msgpack value for output.
func plain(b []byte) (any, error) {
	v, err := tree.DecodeValue(b)
	if err != nil {
		return nil, fmt.Errorf("value does not decode: %w", err)
	}
	return outValue(v), nil
}

// outValue wraps what YAML and JSON cannot show by themselves.
func outValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return binOut(x)
	case map[string]any:
		for k, e := range x {
			x[k] = outValue(e)
		}
	case []any:
		for i, e := range x {
			x[i] = outValue(e)
		}
	case tree.Map:
		for i := range x {
			x[i].Key, x[i].Value = outValue(x[i].Key), outValue(x[i].Value)
		}
		return mapOut(x)
	case tree.Path:
		return pathOut(x)
	case tree.MarkedPath:
		return markedOut(x)
	case *big.Int:
		return bigOut{x}
	case tree.Ext:
		return extOut(x)
	}
	return v
}

type (
	binOut    []byte
	pathOut   tree.Path
	markedOut tree.MarkedPath
	bigOut    struct{ *big.Int }
	extOut    tree.Ext
	mapOut    tree.Map
)

func (b binOut) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!binary", Value: base64.StdEncoding.EncodeToString(b)}, nil
}

func (b binOut) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

func (p pathOut) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!P", Value: tree.Path(p).String()}, nil
}

func (p pathOut) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"!P": tree.Path(p).String()})
}

func (m markedOut) fields() map[string]any {
	return map[string]any{"mark": m.Mark, "path": pathOut(m.Path)}
}

func (m markedOut) MarshalYAML() (any, error) {
	n := &yaml.Node{}
	if err := n.Encode(m.fields()); err != nil {
		return nil, err
	}
	n.Tag = "!mP"
	return n, nil
}

func (m markedOut) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"!mP": m.fields()})
}

func (b bigOut) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: b.String()}, nil
}

func (b bigOut) MarshalJSON() ([]byte, error) { return []byte(b.String()), nil }

func (e extOut) fields() map[string]any {
	f := map[string]any{"type": e.Type, "data": base64.StdEncoding.EncodeToString(e.Data)}
	if e.Type == tree.TimestampExtType {
		if t, _, err := msgp.ReadTimeBytes(append([]byte{0xc7, byte(len(e.Data)), 0xff}, e.Data...)); err == nil {
			f["time"] = t.UTC().Format(time.RFC3339Nano)
		}
	}
	return f
}

func (e extOut) MarshalYAML() (any, error) {
	n := &yaml.Node{}
	if err := n.Encode(e.fields()); err != nil {
		return nil, err
	}
	n.Tag = "!ext"
	return n, nil
}

func (e extOut) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"!ext": e.fields()})
}

// A map with keys that are not strings: YAML keeps them as they are; JSON
// object keys are their text.
func (m mapOut) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, it := range m {
		k, v := &yaml.Node{}, &yaml.Node{}
		if err := k.Encode(it.Key); err != nil {
			return nil, err
		}
		if err := v.Encode(it.Value); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, k, v)
	}
	return n, nil
}

func (m mapOut) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, it := range m {
		if i > 0 {
			b = append(b, ',')
		}
		key, ok := it.Key.(string)
		if !ok {
			kb, err := json.Marshal(it.Key)
			if err != nil {
				return nil, err
			}
			key = string(kb)
		}
		kb, _ := json.Marshal(key)
		vb, err := json.Marshal(it.Value)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, kb...), ':'), vb...)
	}
	return append(b, '}'), nil
}

// valueArg encodes a value given on the command line: YAML (42 an
// integer, "42" a string, !P a.b a Path, !!binary base64 bytes), or with
// literal the text itself as a string.
func valueArg(text string, literal bool) ([]byte, error) {
	if literal {
		return msgp.AppendString(nil, text), nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, usageError{fmt.Errorf("VALUE is not YAML (use --string for text): %w", err)}
	}
	var v any
	if len(doc.Content) > 0 {
		var err error
		if v, err = yamlValue(doc.Content[0], 0); err != nil {
			return nil, usageError{fmt.Errorf("VALUE: %w", err)}
		}
	}
	value, err := tree.AppendValue(nil, v)
	if err != nil {
		return nil, usageError{fmt.Errorf("VALUE: %w", err)}
	}
	return value, nil
}

// yamlValue turns a YAML node into a value AppendValue takes: maps keep
// their order, !P scalars are paths.
func yamlValue(n *yaml.Node, depth int) (any, error) {
	if depth > tree.MaxValueNesting {
		return nil, fmt.Errorf("nested deeper than %d", tree.MaxValueNesting)
	}
	at := func(err error) error { return fmt.Errorf("line %d: %w", n.Line, err) }
	switch n.Kind {
	case yaml.AliasNode:
		return yamlValue(n.Alias, depth+1)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlValue(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		m := make(tree.Map, 0, len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, err := yamlValue(n.Content[i], depth+1)
			if err != nil {
				return nil, err
			}
			key := fmt.Sprintf("%T %#v", k, k)
			if seen[key] {
				return nil, fmt.Errorf("line %d: key %q is given twice", n.Content[i].Line, n.Content[i].Value)
			}
			seen[key] = true
			if n.Content[i].Tag == "!!merge" {
				return nil, at(fmt.Errorf("merge keys (<<) are not supported"))
			}
			v, err := yamlValue(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			m = append(m, tree.MapItem{Key: k, Value: v})
		}
		return m, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!P":
			p, err := tree.ParsePath(n.Value)
			if err != nil {
				return nil, at(fmt.Errorf("!P %q: %w", n.Value, err))
			}
			return p, nil
		case "!!binary":
			b, err := base64.StdEncoding.DecodeString(n.Value)
			if err != nil {
				return nil, at(fmt.Errorf("!!binary: %w", err))
			}
			return b, nil
		case "!!int":
			if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
				return i, nil
			}
			if b, ok := new(big.Int).SetString(n.Value, 0); ok {
				return b, nil
			}
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, at(err)
		}
		switch x := v.(type) {
		case int:
			return int64(x), nil
		case nil, bool, string, float64, int64, uint64:
			return v, nil
		}
		return nil, at(fmt.Errorf("%s %q is not a value edgekv stores", n.Tag, n.Value))
	}
	return nil, at(fmt.Errorf("unexpected YAML node"))
}
