package runner

import (
	"fmt"
	"math"
	"time"

	"github.com/edgekv/edgekv/tree"
)

// The records MoaT-KV's runners keep in the tree (reference spec §7), read
// and written with MoaT-KV's field names and value types, so that its
// `moat kv code` and `moat kv job` commands manage edgekv's jobs.

// Code is a code entry: .moat.kv.code.proc.<path>.
type Code struct {
	Text    string         // "code": the Tengo source
	Vars    []string       // "vars": names the job's data sets
	Default map[string]any // "default": values of vars the data leaves out
	Info    string         // "info"
	// "is_async" and "requires" are accepted and ignored.
}

// Module is a module entry: .moat.kv.code.module.<path> = {code}.
type Module struct{ Text string }

// Job is a job entry: .moat.kv.run.{at.NODE,any,all}.GROUP.<path>.
type Job struct {
	Code      tree.Path      // "code": the code entry's path below the code prefix
	Data      map[string]any // "data": the code's variables
	Target    float64        // "target": unix time of the next start
	HasTarget bool           // target is set (None, False or absent: do not start)
	Repeat    float64        // "repeat": seconds after a success to start again; 0: not again
	Delay     float64        // "delay": seconds after a failure (× backoff^failures); default 100
	Backoff   float64        // "backoff": the factor; default 1.1
	OkAfter   float64        // "ok_after": seconds after which a running job counts as working; 0: when it calls setup_done
	Info      string         // "info"
}

// State is a job's state entry, written only by the runner that runs it.
type State struct {
	Started  float64 // "started": unix time
	Stopped  float64 // "stopped"
	Pinged   float64 // "pinged"
	Computed float64 // "computed": the next start, 0: none
	Reason   string  // "reason": why it is (not) running
	Result   any     // "result": what the last run returned
	Node     string  // "node": who runs it now; "" (None) when nobody
	Backoff  int     // "backoff": failures in a row, capped at MaxBackoff
}

// Defaults as MoaT-KV's.
const (
	DefaultDelay   = 100.0
	DefaultBackoff = 1.1
	MaxBackoff     = 20
	// MinRetry bounds how soon a failed job starts again, whatever its
	// delay and backoff: each failure writes its state and error record,
	// which every node stores.
	MinRetry = 1.0
)

// decodeMap decodes a record, which must be a map with string keys.
func decodeMap(what string, raw []byte) (map[string]any, error) {
	v, err := tree.DecodeValue(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a map, got %s", what, typeName(v))
	}
	return m, nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "a bool"
	case int64, uint64:
		return "an integer"
	case float64:
		return "a float"
	case string:
		return "a string"
	case []byte:
		return "bytes"
	case []any:
		return "a list"
	case map[string]any, tree.Map:
		return "a map"
	case tree.Path:
		return "a path"
	}
	return fmt.Sprintf("a %T", v)
}

// number reads a number field (int or float; nil and absent are def).
func number(m map[string]any, key string, def float64) (float64, error) {
	switch v := m[key].(type) {
	case nil:
		return def, nil
	case int64:
		return float64(v), nil
	case uint64:
		return float64(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("%q: %v is not a usable number", key, v)
		}
		return v, nil
	case bool: // MoaT-KV's CLI writes False for "not set"
		if !v {
			return def, nil
		}
	}
	return 0, fmt.Errorf("%q: want a number, got %s", key, typeName(m[key]))
}

func text(m map[string]any, key string) (string, error) {
	switch v := m[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("%q: want a string, got %s", key, typeName(m[key]))
}

func dict(m map[string]any, key string) (map[string]any, error) {
	switch v := m[key].(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return v, nil
	}
	return nil, fmt.Errorf("%q: want a map with string keys, got %s", key, typeName(m[key]))
}

// DecodeCode reads a code entry.
func DecodeCode(raw []byte) (Code, error) {
	m, err := decodeMap("code entry", raw)
	if err != nil {
		return Code{}, err
	}
	var c Code
	if c.Text, err = text(m, "code"); err != nil {
		return Code{}, fmt.Errorf("code entry: %w", err)
	}
	if c.Info, err = text(m, "info"); err != nil {
		return Code{}, fmt.Errorf("code entry: %w", err)
	}
	if c.Default, err = dict(m, "default"); err != nil {
		return Code{}, fmt.Errorf("code entry: %w", err)
	}
	switch vs := m["vars"].(type) {
	case nil:
	case []any:
		for i, v := range vs {
			s, ok := v.(string)
			if !ok || !validName(s) {
				return Code{}, fmt.Errorf("code entry: \"vars\" item %d: %v is not a variable name", i, v)
			}
			c.Vars = append(c.Vars, s)
		}
	default:
		return Code{}, fmt.Errorf("code entry: \"vars\": want a list of names, got %s", typeName(vs))
	}
	for k := range c.Default {
		if !validName(k) {
			return Code{}, fmt.Errorf("code entry: \"default\": %q is not a variable name", k)
		}
	}
	return c, nil
}

// DecodeModule reads a module entry.
func DecodeModule(raw []byte) (Module, error) {
	m, err := decodeMap("module entry", raw)
	if err != nil {
		return Module{}, err
	}
	t, err := text(m, "code")
	if err != nil {
		return Module{}, fmt.Errorf("module entry: %w", err)
	}
	return Module{Text: t}, nil
}

// DecodeJob reads a job entry. Its code is a Path (MoaT-KV writes ext 3);
// a list of elements or a string in path syntax is taken too.
func DecodeJob(raw []byte) (Job, error) {
	m, err := decodeMap("job entry", raw)
	if err != nil {
		return Job{}, err
	}
	j := Job{}
	switch c := m["code"].(type) {
	case tree.Path:
		j.Code = c
	case string:
		if j.Code, err = tree.ParsePath(c); err != nil {
			return Job{}, fmt.Errorf("job entry: \"code\": %w", err)
		}
	case []any:
		b, err := tree.AppendValue(nil, c)
		if err == nil {
			j.Code, _, err = tree.ReadPath(b)
		}
		if err != nil {
			return Job{}, fmt.Errorf("job entry: \"code\": %w", err)
		}
	case nil:
	default:
		return Job{}, fmt.Errorf("job entry: \"code\": want a path, got %s", typeName(c))
	}
	for _, f := range []struct {
		key string
		to  *float64
		def float64
	}{{"repeat", &j.Repeat, 0}, {"delay", &j.Delay, DefaultDelay}, {"backoff", &j.Backoff, DefaultBackoff}, {"ok_after", &j.OkAfter, 0}} {
		if *f.to, err = number(m, f.key, f.def); err != nil {
			return Job{}, fmt.Errorf("job entry: %w", err)
		}
		if *f.to < 0 {
			return Job{}, fmt.Errorf("job entry: %q: %v is negative", f.key, *f.to)
		}
	}
	switch m["target"].(type) {
	case nil:
	case bool:
		if m["target"] == true {
			return Job{}, fmt.Errorf("job entry: \"target\": want a time, got true")
		}
	default:
		if j.Target, err = number(m, "target", 0); err != nil {
			return Job{}, fmt.Errorf("job entry: %w", err)
		}
		j.HasTarget = true
	}
	if j.Data, err = dict(m, "data"); err != nil {
		return Job{}, fmt.Errorf("job entry: %w", err)
	}
	if j.Info, err = text(m, "info"); err != nil {
		return Job{}, fmt.Errorf("job entry: %w", err)
	}
	return j, nil
}

// DecodeState reads a state entry.
func DecodeState(raw []byte) (State, error) {
	m, err := decodeMap("state entry", raw)
	if err != nil {
		return State{}, err
	}
	var s State
	for key, to := range map[string]*float64{"started": &s.Started, "stopped": &s.Stopped, "pinged": &s.Pinged, "computed": &s.Computed} {
		if *to, err = number(m, key, 0); err != nil {
			return State{}, fmt.Errorf("state entry: %w", err)
		}
	}
	b, err := number(m, "backoff", 0)
	if err != nil {
		return State{}, fmt.Errorf("state entry: %w", err)
	}
	s.Backoff = int(min(max(b, 0), MaxBackoff))
	if s.Reason, err = text(m, "reason"); err != nil {
		return State{}, fmt.Errorf("state entry: %w", err)
	}
	if s.Node, err = text(m, "node"); err != nil {
		return State{}, fmt.Errorf("state entry: %w", err)
	}
	s.Result = m["result"]
	return s, nil
}

// Encode writes the state as MoaT-KV's runner does: times as floats (None
// when unset), node None when nobody runs the job.
func (s State) Encode() ([]byte, error) {
	t := func(v float64) any {
		if v == 0 {
			return int64(0)
		}
		return v
	}
	m := map[string]any{
		"started": t(s.Started), "stopped": t(s.Stopped), "pinged": t(s.Pinged), "computed": t(s.Computed),
		"reason": s.Reason, "backoff": int64(s.Backoff), "node": nil,
	}
	if s.Result != nil {
		m["result"] = s.Result
	}
	if s.Node != "" {
		m["node"] = s.Node
	}
	return tree.AppendValue(nil, m)
}

// Encode writes a job entry with MoaT-KV's field names and types (code a
// Path).
func (j Job) Encode() ([]byte, error) {
	m := map[string]any{"code": j.Code, "data": j.Data, "target": nil, "repeat": j.Repeat,
		"delay": j.Delay, "backoff": j.Backoff, "ok_after": j.OkAfter}
	if j.HasTarget {
		m["target"] = j.Target
	}
	if j.Data == nil {
		m["data"] = map[string]any{}
	}
	if j.Info != "" {
		m["info"] = j.Info
	}
	return tree.AppendValue(nil, m)
}

// Encode writes a code entry as MoaT-KV's `code set` does.
func (c Code) Encode() ([]byte, error) {
	vars := make([]any, len(c.Vars))
	for i, v := range c.Vars {
		vars[i] = v
	}
	m := map[string]any{"code": c.Text, "vars": vars, "default": c.Default, "is_async": true}
	if c.Default == nil {
		m["default"] = map[string]any{}
	}
	if c.Info != "" {
		m["info"] = c.Info
	}
	return tree.AppendValue(nil, m)
}

// unix turns t into MoaT-KV's float seconds.
func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// validName reports whether s can be a Tengo variable.
func validName(s string) bool {
	if s == "" || reserved[s] {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

var reserved = map[string]bool{
	"break": true, "continue": true, "else": true, "for": true, "func": true, "error": true, "immutable": true,
	"if": true, "return": true, "export": true, "true": true, "false": true, "in": true, "undefined": true, "import": true,
	// the runner's own globals
	"kv": true, "event": true, "state": true, "data": true, "result": true,
}
