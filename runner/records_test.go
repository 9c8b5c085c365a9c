package runner

import (
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// TestMoaTRecords: records shaped as MoaT-KV 0.70's CLI writes them decode:
// a code entry from `moat kv code PATH set` (is_async true, vars a list,
// and the stray chain and seq keys a new entry gets), a job entry from
// `moat kv job at PATH set` (code a Path, target a float, delay an int),
// one with target None, and a state its runner wrote.
func TestMoaTRecords(t *testing.T) {
	code := msgp.AppendMapHeader(nil, 7)
	code = msgp.AppendNil(msgp.AppendString(code, "chain"))
	code = msgp.AppendInt(msgp.AppendString(code, "seq"), 3)
	code = msgp.AppendString(msgp.AppendString(code, "code"), "result = a")
	code = msgp.AppendBool(msgp.AppendString(code, "is_async"), true)
	code = msgp.AppendString(msgp.AppendString(code, "info"), "answers")
	code = msgp.AppendString(msgp.AppendArrayHeader(msgp.AppendString(code, "vars"), 1), "a")
	code = msgp.AppendInt(msgp.AppendString(msgp.AppendMapHeader(msgp.AppendString(code, "default"), 1), "a"), 42)
	c, err := DecodeCode(code)
	if err != nil || c.Text != "result = a" || len(c.Vars) != 1 || c.Default["a"] != int64(42) || c.Info != "answers" {
		t.Fatalf("code %+v, %v", c, err)
	}

	job := msgp.AppendMapHeader(nil, 4)
	job = tree.AppendPath(msgp.AppendString(job, "code"), tree.Path{tree.Str("thermo")})
	job = msgp.AppendFloat64(msgp.AppendString(job, "target"), 1796500000.25)
	job = msgp.AppendInt(msgp.AppendString(job, "delay"), 5)
	job = msgp.AppendFloat(msgp.AppendString(msgp.AppendMapHeader(msgp.AppendString(job, "data"), 1), "low"), 19.5)
	j, err := DecodeJob(job)
	if err != nil || !j.Code.Equal(tree.Path{tree.Str("thermo")}) || !j.HasTarget || j.Target != 1796500000.25 || j.Delay != 5 || j.Backoff != DefaultBackoff || j.Data["low"] != 19.5 {
		t.Fatalf("job %+v, %v", j, err)
	}
	none := msgp.AppendNil(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "target"))
	if j, err := DecodeJob(none); err != nil || j.HasTarget {
		t.Fatalf("target None: %+v, %v", j, err)
	}
	st := State{Started: 10.5, Stopped: 11, Node: "", Backoff: 2, Reason: "backoff", Result: "x"}
	b, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := DecodeState(b); err != nil || back.Started != 10.5 || back.Backoff != 2 || back.Result != "x" {
		t.Fatalf("state round trip %+v, %v", back, err)
	}
	for name, raw := range map[string][]byte{
		"not a map":     msgp.AppendInt(nil, 1),
		"code a number": msgp.AppendInt(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "code"), 1),
		"negative":      msgp.AppendInt(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "delay"), -1),
		"target true":   msgp.AppendBool(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "target"), true),
	} {
		if _, err := DecodeJob(raw); err == nil {
			t.Errorf("job %s: no error", name)
		}
	}
	if _, err := DecodeCode(msgp.AppendString(msgp.AppendArrayHeader(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "vars"), 1), "for")); err == nil {
		t.Error("a keyword as a variable name was accepted")
	}
}

// FuzzRecords: job, code, module and state records decoded from any bytes
// never panic, and what decodes encodes again.
func FuzzRecords(f *testing.F) {
	j, _ := Job{Code: tree.Path{tree.Str("c")}, HasTarget: true, Target: 1, Data: map[string]any{"x": int64(1)}}.Encode()
	c, _ := Code{Text: "x := 1", Vars: []string{"a"}}.Encode()
	s, _ := State{Started: 1, Node: "n"}.Encode()
	f.Add(j)
	f.Add(c)
	f.Add(s)
	f.Fuzz(func(t *testing.T, b []byte) {
		if j, err := DecodeJob(b); err == nil {
			if _, err := j.Encode(); err != nil {
				t.Fatalf("job %+v does not encode: %v", j, err)
			}
		}
		if c, err := DecodeCode(b); err == nil {
			if _, err := c.Encode(); err != nil {
				t.Fatalf("code %+v does not encode: %v", c, err)
			}
		}
		_, _ = DecodeModule(b)
		if st, err := DecodeState(b); err == nil {
			if _, err := st.Encode(); err != nil {
				t.Fatalf("state %+v does not encode: %v", st, err)
			}
		}
	})
}
