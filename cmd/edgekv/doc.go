// Command edgekv is the edgekv binary: the command line only. `edgekv run`
// builds its node with the module root's assembly (package edgekv) from the
// board config and runs it until SIGINT or SIGTERM; the client commands
// (get, set, watch, dump, …) speak MoaT-KV's client protocol to a node
// through broker/kvclient; `edgekv config` checks and prints board configs;
// `edgekv sim` replays the simulator.
//
// It may import anything in the module, and nothing imports it. It holds no
// runtime of its own. Commands are built by small constructors (newRootCmd,
// newVersionCmd, newRunCmd, newSimCmd, …) so that each can be replaced in
// its own file.
//
// Exit status: 0 on success, 1 when a command fails, 2 for usage errors
// (unknown command or flag, missing or malformed arguments). A command's
// RunE returns plain errors for failures (status 1) and usageError for
// usage problems it finds itself (status 2); markRunErrors tells them apart
// from cobra's own parsing errors.
package main
