// Package boards owns the board profiles and the YAML board config.
//
// A Profile describes a board model (sim, rpi3, rpi4, rpi5, rpizero2w,
// beaglebone-black, generic): its default 1-wire source, its GPIO chip and
// its named header pins. Lookup and Profiles give them out.
//
// A Config is one node's board config: node name, board, log level, data
// directory and sync policy, listeners, the KV and sync topic prefixes,
// peers, hubs and the credentials of the peers that dial in. Load and Parse
// read one from YAML, fill in the defaults (DefaultConfig) and validate it;
// Default is the config embedded in the binary (default.yaml, copied to
// configs/demo.yaml) that `edgekv run` uses without -c. Unknown keys are
// errors, and every problem is reported at once in a *ConfigError, each
// with its YAML path and line:
//
//	configs/x.yaml:7: peers[1].addr: "localhost" is not host:port: missing port in address
//
// Imports: the standard library and go.yaml.in/yaml/v3 only (DESIGN.md §1;
// layout_test.go checks it). Loading stats the TLS files a config names
// and opens them to see that they can be read (without reading them), and
// Load reads the config file; nothing else touches the system.
//
// Concurrency: a Config is plain data. Finish it (SetNode, Validate) on one
// goroutine, then treat it as immutable; any number of goroutines may read
// it after that. Profiles are immutable package tables; Lookup and Profiles
// return copies.
package boards
