// Command edgekv is the edgekv binary: the command-line interface and the
// wiring of one node (embedded MQTT broker, replicated tree, peer links,
// hardware and jobs).
//
// This package is the only place where the adapter packages (broker, hw,
// runner) meet; it may import anything in the module, and nothing imports
// it. Commands are built by small constructors (newRootCmd, newVersionCmd,
// newRunCmd, newSimCmd) so that each can be replaced in its own file.
//
// Exit status: 0 on success, 1 when a command fails, 2 for usage errors
// (unknown command or flag, missing or malformed arguments). A command's
// RunE returns plain errors for failures (status 1) and usageError for
// usage problems it finds itself (status 2); markRunErrors tells them apart
// from cobra's own parsing errors.
package main
