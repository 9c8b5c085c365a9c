package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// cliAt runs the edgekv CLI in process against the client port srv and
// returns its output; a status other than want fails the test.
func cliAt(t *testing.T, srv string, want int, args ...string) string {
	t.Helper()
	out, code := edgekvCLI(t, append(args, "-s", srv)...)
	if code != want {
		t.Fatalf("edgekv %v -s %s: status %d, want %d: %s", args, srv, code, want, out)
	}
	return out
}

// jsonAt reads PATH's value on srv as JSON (nil if there is none).
func jsonAt(t *testing.T, srv, path string) map[string]any {
	t.Helper()
	out, code := edgekvCLI(t, "get", path, "-o", "json", "-s", srv)
	if code != 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil
	}
	return m
}

func until(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

const thermostat = `
if event.type == "start" {
	kv.watch(temp)
} else if event.type == "change" && !is_undefined(event.value) {
	t := event.value.value
	if t < low {
		kv.hw.drive(relay, %s)
	} else if t > high {
		kv.hw.drive(relay, %s)
	}
}
`

// TestJobsThermostatMesh: three edgekv processes in a line (board1 ->
// board2 -> board3), default sync settings. A thermostat job stored with
// the CLI runs on board2: it watches a sim thermometer bound on board1 and
// drives the sim relay bound on board2 with hysteresis; the relay's state
// is read on board3. Changing the code in the tree changes what the job
// does, within a second.
func TestJobsThermostatMesh(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 6)
	names := []string{"board1", "board2", "board3"}
	hwYAML := map[string]string{
		"board1": "hardware:\n  sensors:\n    - {device: sim-1, path: site.b1.temp, interval: 200ms}\n",
		"board2": "hardware:\n  outputs:\n    - {pin: GPIO27, path: site.b2.heat}\n",
	}
	srv := make([]string, 3)
	for i, name := range names {
		c := e2eCfg{name: name, port: ps[i], client: ps[3+i], heartbeat: "default", data: filepath.Join(dir, name), extra: hwYAML[name]}
		if i < 2 {
			c.peers = []e2eLink{{name: names[i+1], port: ps[i+1]}}
		}
		if i > 0 {
			c.peerUsers = []string{names[i-1]}
		}
		startNodeCfg(t, dir, "", c)
		srv[i] = fmt.Sprintf("127.0.0.1:%d", ps[3+i])
	}
	var temp float64
	until(t, 15*time.Second, "board1's thermometer on board3", func() bool {
		m := jsonAt(t, srv[2], "site.b1.temp")
		v, ok := m["value"].(float64)
		temp = v
		return ok
	})
	file := filepath.Join(dir, "thermostat.tengo")
	os.WriteFile(file, []byte(fmt.Sprintf(thermostat, "true", "false")), 0o644)
	cliAt(t, srv[0], 0, "code", "set", "thermostat", file, "--var", "temp", "--var", "relay", "--default", "low=19", "--default", "high=21", "--info", "heats below low")
	// Well above the room: the heating goes on.
	cliAt(t, srv[0], 0, "job", "add", "heat", "-n", "board2", "--code", "thermostat",
		"--data", "temp=site.b1.temp", "--data", "relay=site.b2.heat",
		"--data", fmt.Sprintf("low=%v", temp+5), "--data", fmt.Sprintf("high=%v", temp+6))
	took := until(t, 15*time.Second, "the relay on, seen on board3", func() bool {
		m := jsonAt(t, srv[2], "site.b2.heat.state")
		return m["value"] == true
	})
	t.Logf("job added on board1 → relay on board2 on, seen on board3: %s", took.Round(time.Millisecond))
	out := cliAt(t, srv[2], 0, "job", "state", "heat", "-n", "board2", "-o", "json")
	if !strings.Contains(out, `"node":"board2"`) || !strings.Contains(out, `"reason":"running"`) {
		t.Errorf("job state on board3: %s", out)
	}
	if out := cliAt(t, srv[2], 0, "job", "list"); !strings.Contains(out, "running on board2") || !strings.Contains(out, "thermostat") {
		t.Errorf("job list on board3:\n%s", out)
	}
	// New code: the same hysteresis, the other way round (a cooler).
	os.WriteFile(file, []byte(fmt.Sprintf(thermostat, "false", "true")), 0o644)
	cliAt(t, srv[0], 0, "code", "set", "thermostat", file)
	took = until(t, 10*time.Second, "the new code switches the relay off, seen on board3", func() bool {
		m := jsonAt(t, srv[2], "site.b2.heat.state")
		return m["value"] == false
	})
	t.Logf("code changed on board1 → relay off on board2, seen on board3: %s", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the code change took %s to act (want about a second)", took)
	}
	if out := cliAt(t, srv[1], 0, "error", "list"); strings.Contains(out, "run") {
		t.Errorf("error records after a clean run:\n%s", out)
	}
}

// TestJobsAnyNodeFailover: an any-node job runs on exactly one of three
// real processes (full mesh, default heartbeat); kill -9 that process and
// another runs the job (the time is logged); restart it and, once the
// mesh is whole, exactly one copy runs. Then a split: SIGSTOP the runner's
// process, another takes the job over; SIGCONT it and exactly one copy
// runs again.
func TestJobsAnyNodeFailover(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 6)
	names := []string{"n1", "n2", "n3"}
	procs := map[string]*proc{}
	srv := map[string]string{}
	for i, name := range names {
		c := e2eCfg{name: name, port: ps[i], client: ps[3+i], heartbeat: "default", data: filepath.Join(dir, name)}
		for j := i + 1; j < 3; j++ {
			c.peers = append(c.peers, e2eLink{name: names[j], port: ps[j]})
		}
		c.peerUsers = names[:i]
		procs[name] = startNodeCfg(t, dir, "", c)
		srv[name] = fmt.Sprintf("127.0.0.1:%d", ps[3+i])
	}
	file := filepath.Join(dir, "beat.tengo")
	os.WriteFile(file, []byte(`
if event.type == "start" {
	kv.every("beat", 0.2)
} else {
	p := "beat." + kv.node
	n := kv.get(p)
	if is_undefined(n) { n = 0 }
	kv.set(p, n + 1)
}
`), 0o644)
	cliAt(t, srv["n1"], 0, "code", "set", "beat", file)
	cliAt(t, srv["n1"], 0, "job", "add", "beat", "--code", "beat")
	runner := func(via string) string {
		m := jsonAt(t, srv[via], ":.moat.kv.state.any.default.beat")
		s, _ := m["node"].(string)
		return s
	}
	counts := func(via string) map[string]float64 {
		out := map[string]float64{}
		for _, n := range names {
			if m, code := edgekvCLI(t, "get", "beat."+n, "-o", "json", "-s", srv[via]); code == 0 {
				var v float64
				fmt.Sscan(strings.TrimSpace(m), &v)
				out[n] = v
			}
		}
		return out
	}
	// copies: the nodes whose counter moves over two seconds.
	copies := func(via string) []string {
		a := counts(via)
		time.Sleep(2 * time.Second)
		b := counts(via)
		var moving []string
		for _, n := range names {
			if b[n] > a[n] {
				moving = append(moving, n)
			}
		}
		return moving
	}
	// exactlyOne: one copy runs, now or (after a heal: each side of a
	// split may have run one) within 15 s.
	exactlyOne := func(via string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			moving := copies(via)
			if len(moving) == 1 {
				return moving[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d copies run (%v)", len(moving), moving)
			}
		}
	}
	var first string
	until(t, 15*time.Second, "the job running", func() bool { first = runner("n1"); return first != "" })
	if got := exactlyOne("n1"); got != first {
		t.Fatalf("state says %s runs it, %s counts", first, got)
	}

	// kill -9 the node that runs it.
	other := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[first]
	procs[first].stop(syscall.SIGKILL)
	killed := time.Now()
	var second string
	until(t, 30*time.Second, "another node runs the job", func() bool {
		second = runner(other)
		return second != "" && second != first
	})
	took := time.Since(killed)
	t.Logf("kill -9 of %s → the job runs on %s after %s (default heartbeat 1 s: a node is dead after 4 missed)", first, second, took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("failover took %s, want within 5 s", took)
	}
	if got := exactlyOne(other); got != second {
		t.Fatalf("after the failover %s counts, state says %s", got, second)
	}

	// It comes back: one copy, wherever rendezvous puts it.
	procs[first].restart()
	exactlyOne(other)

	// A split: the runner's process stops (SIGSTOP); another takes over;
	// it continues (SIGCONT), the split heals, one copy runs.
	cur := runner(other)
	watcher := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[cur]
	procs[cur].cmd.Process.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	until(t, 30*time.Second, "the job taken over during the split", func() bool {
		r := runner(watcher)
		return r != "" && r != cur
	})
	t.Logf("SIGSTOP of %s → taken over after %s", cur, time.Since(stopped).Round(time.Millisecond))
	procs[cur].cmd.Process.Signal(syscall.SIGCONT)
	one := exactlyOne(watcher)
	t.Logf("after the heal the job runs on %s only", one)
}

// moatSession speaks MoaT-KV's client protocol as its Python client does,
// with requests built as its CLI builds them (reference spec §4, the
// captured bytes in moatkv-wire.md; the code and job commands as
// moat/kv/command/code.py and job.py of 0.70.22 send them).
type moatSession struct {
	t   *testing.T
	c   net.Conn
	buf []byte
	seq int
}

func dialMoaT(t *testing.T, srv string) *moatSession {
	t.Helper()
	c, err := net.Dial("tcp", srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &moatSession{t: t, c: c}
	if hello := s.next(); hello["node"] == nil { // the server speaks first
		t.Fatalf("hello: %v", hello)
	}
	return s
}

// request sends the pairs (in this order) plus seq, and returns seq.
func (s *moatSession) request(kv ...any) int {
	s.t.Helper()
	s.seq++
	m := tree.Map{}
	for i := 0; i+1 < len(kv); i += 2 {
		m = append(m, tree.MapItem{Key: kv[i], Value: kv[i+1]})
	}
	m = append(m, tree.MapItem{Key: "seq", Value: int64(s.seq)})
	b, err := tree.AppendValue(nil, m)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.c.Write(b); err != nil {
		s.t.Fatal(err)
	}
	return s.seq
}

// next reads one message.
func (s *moatSession) next() map[string]any {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if rest, err := msgp.Skip(s.buf); err == nil {
			n := len(s.buf) - len(rest)
			v, err := tree.DecodeValue(s.buf[:n])
			s.buf = append(s.buf[:0], rest...)
			if err != nil {
				s.t.Fatal(err)
			}
			m, _ := v.(map[string]any)
			return m
		}
		var b [4096]byte
		n, err := s.c.Read(b[:])
		if err != nil {
			s.t.Fatalf("read: %v", err)
		}
		s.buf = append(s.buf, b[:n]...)
	}
}

// reply returns the first message for seq.
func (s *moatSession) reply(seq int) map[string]any {
	s.t.Helper()
	for {
		m := s.next()
		if m["seq"] == int64(seq) {
			return m
		}
	}
}

// TestMoaTJobCommands: MoaT-KV's `moat kv code PATH set` and `moat kv job
// -n NODE at PATH set` (their requests as its CLI sends them: a get_value
// with nchain 3, then a set_value of the reply dict with the fields
// added, so a new entry carries chain: None and seq), then `job at PATH
// state` and `job list`, against an edgekv node: the node runs the job,
// and MoaT's state and list requests get what MoaT's CLI prints.
func TestMoaTJobCommands(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 2)
	startNodeCfg(t, dir, "", e2eCfg{name: "edge", port: ps[0], client: ps[1], data: filepath.Join(dir, "edge")})
	s := dialMoaT(t, fmt.Sprintf("127.0.0.1:%d", ps[1]))
	moat := func(elems ...string) tree.Path {
		p := tree.Path{tree.Str(".moat"), tree.Str("kv")}
		for _, e := range elems {
			p = append(p, tree.Str(e))
		}
		return p
	}
	// Every MoaT client first watches its config subtree.
	w := s.request("action", "watch", "nchain", int64(3), "path", moat("config"), "fetch", true)
	for m := s.reply(w); m["state"] != "uptodate"; m = s.reply(w) {
	}

	// moat kv code double set -s double.py -v x 21  (here: Tengo)
	codePath := moat("code", "proc", "double")
	g := s.request("action", "get_value", "path", codePath, "nchain", int64(3))
	base := s.reply(g)
	if _, has := base["value"]; has {
		t.Fatalf("a new code entry has a value: %v", base)
	}
	value := tree.Map{{Key: "chain", Value: nil}, {Key: "seq", Value: base["seq"]},
		{Key: "code", Value: "result = x * 2"}, {Key: "is_async", Value: true},
		{Key: "vars", Value: []any{"x"}}, {Key: "default", Value: map[string]any{"x": int64(21)}}}
	if r := s.reply(s.request("action", "set_value", "path", codePath, "value", value, "nchain", int64(3))); r["changed"] != true {
		t.Fatalf("code set: %v", r)
	}

	// moat kv job -n edge at twice set -c double -t 0 -v x 21
	jobPath := moat("run", "at", "edge", "default", "twice")
	base = s.reply(s.request("action", "get_value", "path", jobPath, "nchain", int64(3)))
	job := tree.Map{{Key: "chain", Value: nil}, {Key: "seq", Value: base["seq"]},
		{Key: "code", Value: tree.Path{tree.Str("double")}},
		{Key: "target", Value: float64(time.Now().UnixNano()) / 1e9},
		{Key: "data", Value: map[string]any{"x": int64(21)}}}
	if r := s.reply(s.request("action", "set_value", "path", jobPath, "value", job, "nchain", int64(3))); r["changed"] != true {
		t.Fatalf("job set: %v", r)
	}

	// moat kv job -n edge at twice state
	statePath := moat("state", "at", "edge", "default", "twice")
	var st map[string]any
	until(t, 10*time.Second, "the job's result in its state", func() bool {
		r := s.reply(s.request("action", "get_value", "path", statePath, "nchain", false))
		st, _ = r["value"].(map[string]any)
		return st["result"] == int64(42)
	})
	for _, k := range []string{"started", "stopped", "pinged", "computed", "reason", "node", "backoff"} {
		if _, ok := st[k]; !ok {
			t.Errorf("state lacks %q: %v", k, st)
		}
	}
	if st["node"] != nil || st["backoff"] != int64(0) {
		t.Errorf("state %v: want node None, backoff 0", st)
	}
	if started, _ := st["started"].(float64); started == 0 {
		t.Errorf("started %v: want a float time", st["started"])
	}

	// moat kv job -n edge list: get_tree of the group's entries.
	lst := s.request("action", "get_tree", "path", moat("run", "at", "edge", "default"), "iter", true, "long_path", true)
	found := false
	for m := s.reply(lst); m["state"] != "end" && m["error"] == nil; m = s.reply(lst) {
		if v, ok := m["value"].(map[string]any); ok {
			if c, ok := v["code"].(tree.Path); ok && c.Equal(tree.Path{tree.Str("double")}) {
				found = true
			}
		}
		if _, streaming := m["state"]; !streaming && m["value"] == nil {
			break
		}
	}
	if !found {
		t.Error("get_tree of the jobs did not give the job with its code Path")
	}
}

// TestJobsRunaways: an endless loop, an allocation bomb, a deep recursion
// and a division by zero run as jobs on a node process, each restarting
// every fraction of a second; each fails with an error record, and the
// node meanwhile answers the client protocol (get p50 logged against the
// same node before) and MQTT.
func TestJobsRunaways(t *testing.T) {
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	dir := t.TempDir()
	ps := freePorts(t, 2)
	startNodeCfg(t, dir, "", e2eCfg{name: "rw", port: ps[0], client: ps[1], heartbeat: "default", data: filepath.Join(dir, "rw")})
	srv := fmt.Sprintf("127.0.0.1:%d", ps[1])
	ctx := t.Context()
	c, err := kvclient.Dial(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := tree.Path{tree.Str("probe")}
	if _, err := c.Set(ctx, p, msgp.AppendInt(nil, 1), kvclient.WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	p50 := func() time.Duration {
		lat := make([]time.Duration, 300)
		for i := range lat {
			start := time.Now()
			if _, _, err := c.Get(ctx, p, 0); err != nil {
				t.Fatal(err)
			}
			lat[i] = time.Since(start)
		}
		slices.Sort(lat)
		return lat[len(lat)/2]
	}
	before := p50()
	jobs := map[string]string{
		"loop":      "for {}",
		"alloc":     "a := []; for { a = append(a, [1, 2, 3]) }",
		"recursion": "f := func() { return 1 + f() }; f()",
		"divzero":   "x := 0; y := 1 / x",
	}
	for name, code := range jobs {
		file := filepath.Join(dir, name+".tengo")
		os.WriteFile(file, []byte(code), 0o644)
		cliAt(t, srv, 0, "code", "set", name, file)
		cliAt(t, srv, 0, "job", "add", name, "-n", "rw", "--code", name, "--delay", "0.05", "--backoff", "1")
	}
	until(t, 15*time.Second, "an error record per job", func() bool {
		out := cliAt(t, srv, 0, "error", "list")
		for name := range jobs {
			if !strings.Contains(out, "rw.default."+name) {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // the loop burns a core from here on
	during := p50()
	t.Logf("client get p50: %s before the runaway jobs, %s while they run", before, during)
	if during > 5*before+time.Millisecond {
		t.Errorf("get p50 %s while the runaways run, %s before", during, before)
	}
	out, err := exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "kv/probe", "-C", "1", "-W", "3").Output()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("MQTT while the runaways run: %q, %v", out, err)
	}
	recs := cliAt(t, srv, 0, "error", "list")
	for name, want := range map[string]string{"loop": "longer than", "alloc": "allocated more than", "recursion": "stack overflow", "divzero": "divide by zero"} {
		found := false
		for _, line := range strings.Split(recs, "\n") {
			found = found || strings.Contains(line, "rw.default."+name) && strings.Contains(line, want)
		}
		if !found {
			t.Errorf("%s: no error record saying %q in:\n%s", name, want, recs)
		}
	}
}

// TestJobsCLI: the code, job and error commands against a node process,
// with their exit statuses (1: no such entry, 2: usage) and -o json.
func TestJobsCLI(t *testing.T) {
	_, srv, _, run := cliNodeNamed(t, "cj")
	dir := t.TempDir()
	src := filepath.Join(dir, "twice.tengo")
	os.WriteFile(src, []byte("result = x * 2\n"), 0o644)
	run(0, "code", "set", "lib.twice", src, "--var", "x", "--default", "x=4", "--info", "doubles x")
	if got := run(0, "code", "get", "lib.twice", "--script"); got != "result = x * 2\n" {
		t.Errorf("code get --script = %q", got)
	}
	if got := run(0, "code", "get", "lib.twice", "-o", "json"); !strings.Contains(got, `"vars":["x"]`) || !strings.Contains(got, `"default":{"x":4}`) {
		t.Errorf("code get -o json = %s", got)
	}
	if got := run(0, "code", "list"); !strings.Contains(got, "lib.twice") || !strings.Contains(got, "doubles x") {
		t.Errorf("code list:\n%s", got)
	}
	run(2, "code", "set", "lib.bad", src, "--default", "for=1") // a keyword is no variable
	run(2, "code", "set", "lib.bad", filepath.Join(dir, "missing.tengo"))
	run(2, "job", "add", "j1", "--code", "lib.twice", "--data", "x")
	run(2, "job", "add", "j1", "--code", "lib.twice", "-n", "cj", "--all")
	run(2, "job", "add", "j1", "--code", "lib.twice", "--start", "tomorrow")
	run(0, "job", "add", "j1", "-n", "cj", "--code", "lib.twice", "--data", "x=21")
	until(t, 10*time.Second, "the job's result", func() bool {
		out, code := edgekvCLI(t, "job", "state", "j1", "-n", "cj", "-o", "json", "-s", srv)
		return code == 0 && strings.Contains(out, `"result":42`)
	})
	if got := run(0, "job", "list", "-o", "json"); !strings.Contains(got, `"path":"j1"`) || !strings.Contains(got, `"code":"lib.twice"`) {
		t.Errorf("job list -o json = %s", got)
	}
	run(0, "job", "delete", "j1", "-n", "cj")
	until(t, 10*time.Second, "the job's state gone", func() bool {
		_, code := edgekvCLI(t, "job", "state", "j1", "-n", "cj", "-s", srv)
		return code == 1
	})
	run(1, "job", "delete", "j1", "-n", "cj")

	// A failing job: its error record, resolved by hand.
	os.WriteFile(src, []byte(`kv.fail("broken on purpose")`), 0o644)
	run(0, "code", "set", "lib.fails", src)
	run(0, "job", "add", "f1", "-n", "cj", "--code", "lib.fails")
	var id string
	until(t, 10*time.Second, "the error record", func() bool {
		for _, line := range strings.Split(run(0, "error", "list"), "\n") {
			if strings.Contains(line, "broken on purpose") {
				id = strings.Fields(line)[0]
			}
		}
		return id != ""
	})
	run(0, "error", "resolve", id)
	if got := run(0, "error", "list"); strings.Contains(got, "broken on purpose") {
		t.Errorf("resolved record still listed:\n%s", got)
	}
	if got := run(0, "error", "list", "--all"); !strings.Contains(got, "(resolved) broken on purpose") {
		t.Errorf("error list --all:\n%s", got)
	}
	run(1, "error", "resolve", "cj:999999")
	run(0, "code", "delete", "lib.twice")
	run(1, "code", "get", "lib.twice")
}
