// Package runner runs jobs: Tengo code stored in the tree, MoaT-KV's
// runners re-done (reference spec §6.5, §7; DESIGN.md §8).
//
// It owns the records and their shapes, which are MoaT-KV's so that its
// `moat kv code` and `moat kv job` commands manage edgekv's jobs: code at
// :.moat.kv.code.proc.PATH ({code, vars, default, info, is_async}),
// modules at :.moat.kv.code.module.PATH ({code}), jobs at
// :.moat.kv.run.{at.NODE,any,all}.GROUP.PATH ({code: a Path, data,
// target, repeat, delay, backoff, ok_after, info}), states at
// :.moat.kv.state.{at.NODE.GROUP,any.GROUP,all.GROUP.NODE}.PATH, written
// only by the runner that runs the job, and error records at
// :.moat.kv.error.NODE.TOCK (subsystems "compile" and "run"). Prefixes are
// configurable (Config.Prefix).
//
// Scheduling is MoaT-KV's should_start (schedule): target, backoff
// (delay × backoff^failures, failures capped at 20), repeat. A change to
// a job's code or entry stops its running instance and starts it again at
// once; a deleted entry stops it and deletes its state; a state that says
// this node runs the job when the runner starts (a crash) is marked
// "runner restarted" and backs off. Single-node jobs run on their node,
// all-node jobs on every node (a state each), any-node jobs on the one
// live member of the group that rendezvous hashing over the live members
// picks (Config.Members, the engine's view of heartbeats; each runner
// says which groups it serves at :n.edgekv.runner.NODE, in the meta tree).
//
// Execution: code is compiled once per version (with the tree's modules,
// importable by path text, "lib.util") and each activation runs a clone:
// at start, and then once per event the job asked for (kv.watch,
// kv.timer, kv.every), one at a time, in order. The sandbox allows only
// the standard modules math, text, times (without sleep), rand, fmt
// (without print), json, base64, hex and enum; strings and bytes are
// bounded at 1 MiB; every activation has an allocation limit and a time
// limit (Limits), so an endless loop, an allocation bomb, a deep recursion
// or a runtime error ends that job with an error record and nothing else.
// The kv API is documented in api.go.
//
// Imports: the tree, its engine's types (tree/node), tengo. The engine
// and the hardware reach it through the small interfaces Tree, Hardware
// and Config.Members; it never imports broker or hw.
//
// Concurrency: Run's goroutine owns the code and job tables; each job has
// a controller goroutine and, while it runs, an instance goroutine with
// one goroutine per watch and timer; all of them end before Run returns.
package runner
