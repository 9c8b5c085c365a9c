package boards

import (
	"fmt"
	"time"
)

// Jobs configures the node's job runner (MoaT-KV's runners, DESIGN.md §8):
// Tengo code stored in the tree, run on this node, on any node of a
// group, or on all nodes.
type Jobs struct {
	// Disabled: this node runs no jobs (it still stores them).
	Disabled bool `yaml:"disabled"`
	// Groups are the any-node groups this node serves. Default [default].
	Groups []string `yaml:"groups"`
	// Activation bounds one activation of a job (a run of its code for one
	// event). Default 1s, 10ms to 1m.
	Activation Duration `yaml:"activation"`
	// MaxAllocs bounds the objects one activation allocates. Default
	// 200000, 1000 to 100000000.
	MaxAllocs int `yaml:"max_allocs"`
	// MaxHeapMiB stops an activation under which the node's heap grows by
	// more than this many MiB. Default 64, 8 to 4096.
	MaxHeapMiB int `yaml:"max_heap_mib"`
	// Prefix says where the records live, as MoaT-KV paths. Defaults are
	// MoaT-KV's: code :.moat.kv.code.proc, module :.moat.kv.code.module,
	// run :.moat.kv.run, state :.moat.kv.state, error :.moat.kv.error.
	Prefix JobPrefixes `yaml:"prefix"`
}

// JobPrefixes are the runner's record prefixes ("" for the default).
type JobPrefixes struct {
	Code   string `yaml:"code"`
	Module string `yaml:"module"`
	Run    string `yaml:"run"`
	State  string `yaml:"state"`
	Error  string `yaml:"error"`
}

// Job defaults and bounds.
const (
	DefaultActivation = time.Second
	DefaultMaxAllocs  = 200_000
)

func (v *validator) jobs(checkPath func(string) error) {
	j := v.c.Jobs
	seen := map[string]bool{}
	for i, g := range j.Groups {
		at := fmt.Sprintf("jobs.groups[%d]", i)
		switch {
		case g == "":
			v.add(at, "a group name is required")
		case seen[g]:
			v.add(at, "group %q is given twice", g)
		case nameProblem(g) != "":
			v.add(at, "%q: %s", g, nameProblem(g))
		}
		seen[g] = true
	}
	if a := j.Activation.Std(); a != 0 && (a < 10*time.Millisecond || a > time.Minute) {
		v.add("jobs.activation", "%s is out of range (10ms to 1m)", j.Activation)
	}
	if m := j.MaxAllocs; m != 0 && (m < 1000 || m > 100_000_000) {
		v.add("jobs.max_allocs", "%d is out of range (1000 to 100000000)", m)
	}
	if m := j.MaxHeapMiB; m != 0 && (m < 8 || m > 4096) {
		v.add("jobs.max_heap_mib", "%d is out of range (8 to 4096)", m)
	}
	if checkPath == nil {
		return
	}
	for key, p := range map[string]string{"code": j.Prefix.Code, "module": j.Prefix.Module, "run": j.Prefix.Run, "state": j.Prefix.State, "error": j.Prefix.Error} {
		if p == "" {
			continue
		}
		if err := checkPath(p); err != nil {
			v.add("jobs.prefix."+key, "%q is not a tree path: %v", p, err)
		}
	}
}
