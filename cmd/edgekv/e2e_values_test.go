package main

import (
	"bytes"
	"context"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// extValues are entries holding MoaT-KV's extension types: a job entry
// (its code a Path, ext 3), a big integer (ext 2), a proxy (ext 4), a
// marked path (ext 6), a timestamp (-1), an unknown extension and a map
// with an integer key.
func extValues(t *testing.T) map[string][]byte {
	t.Helper()
	job := msgp.AppendMapHeader(nil, 4)
	job = tree.AppendPath(msgp.AppendString(job, "code"), tree.Path{tree.Str("thermo"), tree.Str("main")})
	job = msgp.AppendMapHeader(msgp.AppendString(job, "data"), 1)
	job = msgp.AppendFloat64(msgp.AppendString(job, "low"), 19.5)
	job = msgp.AppendFloat64(msgp.AppendString(job, "target"), 1.5)
	job = msgp.AppendInt64(msgp.AppendString(job, "repeat"), 0)
	big70, _ := tree.AppendValue(nil, new(big.Int).Lsh(big.NewInt(1), 70))
	marked, _ := tree.AppendValue(nil, tree.MarkedPath{Mark: "r", Path: tree.Path{tree.Str("a"), tree.Int(1)}})
	intKey := msgp.AppendString(msgp.AppendInt64(msgp.AppendMapHeader(nil, 1), 7), "seven")
	return map[string][]byte{
		"x.job":    job,
		"x.big":    big70,
		"x.proxy":  {0xd5, 4, 0xa1, 'x'},
		"x.marked": marked,
		"x.time":   {0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00},
		"x.ext42":  {0xc7, 3, 42, 1, 2, 3},
		"x.intkey": intKey,
	}
}

// TestE2EExtensionValues: entries holding MoaT-KV's extension types print
// in every output format of get, tree and watch (a Path as !P in YAML,
// {"!P": …} in JSON), set writes a Path from YAML's !P, and dump save and
// load carry them byte for byte into another node.
func TestE2EExtensionValues(t *testing.T) {
	_, srv, _, run := cliNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kvclient.Dial(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	vals := extValues(t)
	for path, raw := range vals {
		p, _ := tree.ParsePath(path)
		if _, err := c.Set(ctx, p, raw, kvclient.WriteOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	for path, want := range map[string][2]string{ // YAML, JSON
		"x.job":    {"code: !P thermo.main", `"code":{"!P":"thermo.main"}`},
		"x.big":    {"1180591620717411303424", "1180591620717411303424"},
		"x.proxy":  {"!ext", `{"!ext":{"data":"oXg=","type":4}}`},
		"x.marked": {"!mP", `{"!mP":{"mark":"r","path":{"!P":"a:1"}}}`},
		"x.time":   {"time: \"2023-11-14T22:13:20Z\"", `"time":"2023-11-14T22:13:20Z"`},
		"x.ext42":  {"type: 42", `{"!ext":{"data":"AQID","type":42}}`},
		"x.intkey": {"7: seven", `{"7":"seven"}`},
	} {
		if got := run(0, "get", path); !strings.Contains(got, want[0]) {
			t.Errorf("get %s (yaml) = %q, want it to contain %q", path, got, want[0])
		}
		if got := run(0, "get", path, "-o", "json"); !strings.Contains(got, want[1]) {
			t.Errorf("get %s -o json = %q, want it to contain %q", path, got, want[1])
		}
	}
	for _, format := range []string{"yaml", "json"} {
		out := run(0, "tree", "x", "-o", format)
		if strings.Count(out, "thermo.main") != 1 || !strings.Contains(out, "1180591620717411303424") {
			t.Errorf("tree x -o %s:\n%s", format, out)
		}
	}

	// set: !P writes a Path (ext 3), and a Path inside a map.
	run(0, "set", "x.code_ref", "!P thermo.main")
	run(0, "set", "x.job2", "{code: !P thermo.main, data: {low: 19.5}}")
	for path, want := range map[string][]byte{
		"x.code_ref": tree.AppendPath(nil, tree.Path{tree.Str("thermo"), tree.Str("main")}),
	} {
		p, _ := tree.ParsePath(path)
		e, found, err := c.Get(ctx, p, 0)
		if err != nil || !found || !bytes.Equal(e.Value, want) {
			t.Errorf("%s holds % x (%v %v), want % x", path, e.Value, found, err, want)
		}
	}
	if got := run(0, "get", "x.job2", "-o", "json"); !strings.Contains(got, `"code":{"!P":"thermo.main"}`) {
		t.Errorf("x.job2 = %s", got)
	}
	run(2, "set", "x.bad", "!P a..b") // not a path: a usage error

	// dump save and load into a second node: byte for byte.
	dir := t.TempDir()
	saved := filepath.Join(dir, "ext.dkv")
	run(0, "dump", "save", saved)
	_, srv2, _, run2 := cliNodeNamed(t, "other")
	run2(0, "dump", "load", saved)
	c2, err := kvclient.Dial(ctx, srv2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for path, raw := range vals {
		p, _ := tree.ParsePath(path)
		e, found, err := c2.Get(ctx, p, 0)
		if err != nil || !found || !bytes.Equal(e.Value, raw) {
			t.Errorf("after dump save and load, %s holds % x (%v %v), want % x", path, e.Value, found, err, raw)
		}
	}
}
