package edgekv

import (
	"time"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/runner"
	"github.com/edgekv/edgekv/tree"
)

// newRunner builds the node's job runner from cfg's jobs section, or
// returns nil when it is disabled.
func (n *Node) newRunner(cfg *boards.Config) (*runner.Runner, error) {
	jc := cfg.Jobs
	if jc.Disabled {
		return nil, nil
	}
	pre := runner.DefaultPrefixes()
	for _, p := range []struct {
		text string
		to   *tree.Path
	}{{jc.Prefix.Code, &pre.Code}, {jc.Prefix.Module, &pre.Module}, {jc.Prefix.Run, &pre.Run}, {jc.Prefix.State, &pre.State}, {jc.Prefix.Error, &pre.Error}} {
		if p.text == "" {
			continue
		}
		path, err := tree.ParsePath(p.text)
		if err != nil {
			return nil, err // checked by Validate
		}
		*p.to = path
	}
	return runner.New(n.eng, runner.Config{
		Node:    cfg.Node,
		Groups:  jc.Groups,
		Prefix:  pre,
		Limits:  runner.Limits{MaxAllocs: int64(jc.MaxAllocs), Activation: jc.Activation.Std(), MaxHeap: uint64(jc.MaxHeapMiB) << 20},
		Log:     n.log,
		HW:      n.hw,
		Members: n.eng.Members,
		// Who serves a group is known once the others' heartbeats came.
		AnyGrace: 2 * max(cfg.Sync.Heartbeat.Std(), 500*time.Millisecond),
	}), nil
}
