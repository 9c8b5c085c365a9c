package runner

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/d5/tengo/v2"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// The job API: the global `kv`, a map of functions bound to the instance.
//
//	kv.get(path)                  the value at path, or undefined
//	kv.set(path, value[, cond])   write; true if it changed something. cond:
//	                              {absent: true} (must not exist) or {prev: v}
//	                              (must hold v); a failed condition returns an
//	                              error value, not a failure
//	kv.delete(path[, cond])       delete; cond {prev: v}; true if deleted
//	kv.watch(path[, fetch])       events "change" for every change at or below
//	                              path (fetch, the default: the entries there
//	                              first; once every fetching watch has given
//	                              them, one "ready")
//	kv.timer(name, seconds)       an event "timer" once; kv.every: repeatedly;
//	kv.every(name, seconds)       kv.cancel(name) stops it
//	kv.group()                    {live: [nodes], state: complete|partial|detached}
//	kv.log(args...)               a line in the node's log
//	kv.fail(message)              record an error for the job and fail it
//	                              (MoaT-KV's error(); also kv["error"])
//	kv.setup_done()               the job works: backoff 0, its error resolved
//	kv.exit([result])             end the job now, successfully
//	kv.hw.read(path)              a bound sensor's reading (°C), on this node
//	kv.hw.drive(path, on)         drive a bound output, on this node
//	kv.node, kv.job, kv.data      this node's name, the job's path, its data
//
// Paths are strings in MoaT-KV's path syntax ("home.temp", "a:1").

func (inst *instance) newAPI(data *tengo.ImmutableMap) *tengo.ImmutableMap {
	fn := func(name string, f tengo.CallableFunc) tengo.Object {
		return &tengo.UserFunction{Name: name, Value: f}
	}
	hw := &tengo.ImmutableMap{Value: map[string]tengo.Object{
		"read":  fn("read", inst.hwRead),
		"drive": fn("drive", inst.hwDrive),
	}}
	return &tengo.ImmutableMap{Value: map[string]tengo.Object{
		"get":        fn("get", inst.get),
		"set":        fn("set", inst.set),
		"delete":     fn("delete", inst.del),
		"watch":      fn("watch", inst.watchFn),
		"timer":      fn("timer", inst.timerFn(false)),
		"every":      fn("every", inst.timerFn(true)),
		"cancel":     fn("cancel", inst.cancelFn),
		"group":      fn("group", inst.group),
		"log":        fn("log", inst.logFn),
		"fail":       fn("fail", inst.errorFn),
		"error":      fn("error", inst.errorFn), // kv["error"](…): error is a Tengo keyword
		"setup_done": fn("setup_done", inst.setupFn),
		"exit":       fn("exit", inst.exitFn),
		"hw":         hw,
		"node":       &tengo.String{Value: inst.c.r.cfg.Node},
		"job":        &tengo.String{Value: inst.in.entry.path.String()},
		"data":       data,
	}}
}

// pathArg reads argument i as a path.
func pathArg(fname string, args []tengo.Object, i int) (tree.Path, error) {
	if len(args) <= i {
		return nil, fmt.Errorf("kv.%s: a path is required", fname)
	}
	s, ok := tengo.ToString(args[i])
	if _, isStr := args[i].(*tengo.String); !ok || !isStr {
		return nil, fmt.Errorf("kv.%s: the path must be a string, not %s", fname, args[i].TypeName())
	}
	p, err := tree.ParsePath(s)
	if err != nil {
		return nil, fmt.Errorf("kv.%s: %w", fname, err)
	}
	return p, nil
}

func errObject(err error) tengo.Object {
	return &tengo.Error{Value: &tengo.String{Value: err.Error()}}
}

func boolObject(b bool) tengo.Object {
	if b {
		return tengo.TrueValue
	}
	return tengo.FalseValue
}

func (inst *instance) get(args ...tengo.Object) (tengo.Object, error) {
	p, err := pathArg("get", args, 0)
	if err != nil {
		return nil, err
	}
	e, err := inst.c.r.tree.Get(inst.actx, p)
	if err != nil {
		return nil, fmt.Errorf("kv.get: %w", err)
	}
	if e.Value == nil {
		return tengo.UndefinedValue, nil
	}
	v, err := tree.DecodeValue(e.Value)
	if err != nil {
		return errObject(err), nil
	}
	return toTengo(v), nil
}

// cond reads an optional condition map.
func cond(fname string, args []tengo.Object, i int) (node.Cond, error) {
	var c node.Cond
	if len(args) <= i {
		return c, nil
	}
	m, ok := args[i].(*tengo.Map)
	if !ok {
		if im, ok2 := args[i].(*tengo.ImmutableMap); ok2 {
			m = &tengo.Map{Value: im.Value}
		} else {
			return c, fmt.Errorf("kv.%s: the condition must be a map ({absent: true} or {prev: value})", fname)
		}
	}
	for k, v := range m.Value {
		switch k {
		case "absent":
			c.MustNotExist = !v.IsFalsy()
		case "prev":
			pv, err := fromTengoChecked(v)
			if err != nil {
				return c, fmt.Errorf("kv.%s: prev: %w", fname, err)
			}
			if c.Prev, err = tree.AppendValue(nil, pv); err != nil {
				return c, fmt.Errorf("kv.%s: prev: %w", fname, err)
			}
		default:
			return c, fmt.Errorf("kv.%s: unknown condition %q (want absent or prev)", fname, k)
		}
	}
	return c, nil
}

func (inst *instance) set(args ...tengo.Object) (tengo.Object, error) {
	p, err := pathArg("set", args, 0)
	if err != nil {
		return nil, err
	}
	if len(args) < 2 {
		return nil, fmt.Errorf("kv.set: a value is required")
	}
	v, err := fromTengoChecked(args[1])
	if err != nil {
		return nil, fmt.Errorf("kv.set %s: %w", p, err)
	}
	b, err := tree.AppendValue(nil, v)
	if err != nil {
		return nil, fmt.Errorf("kv.set %s: %w", p, err)
	}
	c, err := cond("set", args, 2)
	if err != nil {
		return nil, err
	}
	c.Idem = true
	res, err := inst.c.r.tree.Set(inst.actx, p, b, c)
	switch {
	case errors.Is(err, tree.ErrConflict), errors.Is(err, tree.ErrNotFound):
		return errObject(err), nil
	case err != nil:
		return nil, fmt.Errorf("kv.set %s: %w", p, err)
	}
	return boolObject(!res.NoOp), nil
}

func (inst *instance) del(args ...tengo.Object) (tengo.Object, error) {
	p, err := pathArg("delete", args, 0)
	if err != nil {
		return nil, err
	}
	c, err := cond("delete", args, 1)
	if err != nil {
		return nil, err
	}
	_, err = inst.c.r.tree.Delete(inst.actx, p, c)
	switch {
	case errors.Is(err, tree.ErrNotFound):
		return tengo.FalseValue, nil
	case errors.Is(err, tree.ErrConflict):
		return errObject(err), nil
	case err != nil:
		return nil, fmt.Errorf("kv.delete %s: %w", p, err)
	}
	return tengo.TrueValue, nil
}

func (inst *instance) watchFn(args ...tengo.Object) (tengo.Object, error) {
	p, err := pathArg("watch", args, 0)
	if err != nil {
		return nil, err
	}
	fetch := len(args) < 2 || !args[1].IsFalsy()
	if len(inst.newWatches)+inst.watching >= 16 {
		return nil, fmt.Errorf("kv.watch: a job may watch at most 16 paths")
	}
	inst.newWatches = append(inst.newWatches, watchReq{path: p, fetch: fetch})
	return tengo.TrueValue, nil
}

func (inst *instance) timerFn(repeat bool) tengo.CallableFunc {
	fname := "timer"
	if repeat {
		fname = "every"
	}
	return func(args ...tengo.Object) (tengo.Object, error) {
		if len(args) != 2 {
			return nil, fmt.Errorf("kv.%s(name, seconds): want 2 arguments, got %d", fname, len(args))
		}
		name, ok := args[0].(*tengo.String)
		if !ok {
			return nil, fmt.Errorf("kv.%s: the name must be a string", fname)
		}
		secs, ok := tengo.ToFloat64(args[1])
		if !ok || secs != secs || secs < 0.01 || secs > 365*24*3600 {
			return nil, fmt.Errorf("kv.%s: %s is not a number of seconds from 0.01 to a year", fname, args[1])
		}
		if len(inst.timers)+len(inst.newTimers) >= 64 {
			return nil, fmt.Errorf("kv.%s: a job may have at most 64 timers", fname)
		}
		inst.newTimers = append(inst.newTimers, timerReq{name: name.Value, after: time.Duration(secs * float64(time.Second)), repeat: repeat})
		return tengo.TrueValue, nil
	}
}

func (inst *instance) cancelFn(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("kv.cancel(name): want 1 argument")
	}
	name, _ := tengo.ToString(args[0])
	inst.newTimers = slices.DeleteFunc(inst.newTimers, func(t timerReq) bool { return t.name == name })
	inst.cancels = append(inst.cancels, name)
	return tengo.TrueValue, nil
}

// group says which members of the job's group are live: complete (all the
// group's known members), partial, or detached (only this node).
func (inst *instance) group(args ...tengo.Object) (tengo.Object, error) {
	r := inst.c.r
	g := inst.in.entry.group
	var known []string
	r.mu.Lock()
	for n, gs := range r.groupOf {
		if slices.Contains(gs, g) || inst.in.entry.kind != kindAny {
			known = append(known, n)
		}
	}
	r.mu.Unlock()
	live := []string{r.cfg.Node}
	if r.cfg.Members != nil {
		if ms, err := r.cfg.Members(inst.actx); err == nil {
			for _, n := range known {
				if n != r.cfg.Node && ms[n] {
					live = append(live, n)
				}
			}
		}
	}
	slices.Sort(live)
	state := "partial"
	switch {
	case len(live) >= len(known):
		state = "complete"
	case len(live) == 1:
		state = "detached"
	}
	arr := make([]tengo.Object, len(live))
	for i, n := range live {
		arr[i] = &tengo.String{Value: n}
	}
	return &tengo.ImmutableMap{Value: map[string]tengo.Object{
		"live": &tengo.ImmutableArray{Value: arr}, "state": &tengo.String{Value: state}, "group": &tengo.String{Value: g},
	}}, nil
}

func argText(args []tengo.Object) string {
	parts := make([]string, len(args))
	for i, a := range args {
		switch x := a.(type) {
		case *tengo.String:
			parts[i] = x.Value
		default:
			if _, err := measure(a, 64<<10); err != nil {
				parts[i] = "<" + a.TypeName() + ": " + err.Error() + ">"
			} else {
				parts[i] = a.String()
			}
		}
	}
	return strings.Join(parts, " ")
}

func (inst *instance) logFn(args ...tengo.Object) (tengo.Object, error) {
	msg := argText(args)
	if len(msg) > 4096 {
		msg = msg[:4096] + "…"
	}
	inst.log.Info("job log", "msg", msg)
	return tengo.UndefinedValue, nil
}

func (inst *instance) errorFn(args ...tengo.Object) (tengo.Object, error) {
	msg := argText(args)
	if msg == "" {
		msg = "kv.error"
	}
	inst.c.r.errs.record(inst.actx, "run", inst.in.entry.path, msg)
	return nil, errRecorded{msg: msg}
}

func (inst *instance) setupFn(...tengo.Object) (tengo.Object, error) {
	inst.setupDone()
	return tengo.TrueValue, nil
}

func (inst *instance) exitFn(args ...tengo.Object) (tengo.Object, error) {
	var v tengo.Object = tengo.UndefinedValue
	if len(args) > 0 {
		v = args[0]
	}
	inst.exit = &v
	return nil, errExit{}
}

func (inst *instance) hwRead(args ...tengo.Object) (tengo.Object, error) {
	p, err := pathArg("hw.read", args, 0)
	if err != nil {
		return nil, err
	}
	if inst.c.r.cfg.HW == nil {
		return nil, fmt.Errorf("kv.hw.read: node %s has no hardware", inst.c.r.cfg.Node)
	}
	v, err := inst.c.r.cfg.HW.ReadSensor(inst.actx, p)
	if err != nil {
		return errObject(err), nil
	}
	return &tengo.Float{Value: v}, nil
}

func (inst *instance) hwDrive(args ...tengo.Object) (tengo.Object, error) {
	p, err := pathArg("hw.drive", args, 0)
	if err != nil {
		return nil, err
	}
	if len(args) != 2 {
		return nil, fmt.Errorf("kv.hw.drive(path, on): want 2 arguments")
	}
	if inst.c.r.cfg.HW == nil {
		return nil, fmt.Errorf("kv.hw.drive: node %s has no hardware", inst.c.r.cfg.Node)
	}
	if err := inst.c.r.cfg.HW.DriveOutput(inst.actx, p, !args[1].IsFalsy()); err != nil {
		return nil, fmt.Errorf("kv.hw.drive %s: %w", p, err)
	}
	return tengo.TrueValue, nil
}
