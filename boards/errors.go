package boards

import (
	"strconv"
	"strings"
)

// Problem is one thing wrong with a board config.
type Problem struct {
	// Path is the YAML path of the offending value, such as
	// "peers[1].addr" or "listen.mqtt[0]"; empty for a problem with the
	// document as a whole (a YAML syntax error, say).
	Path string
	// Line is the 1-based line of the value in the source, or 0 when it is
	// not known (a config built in code, a value filled in by default).
	Line int
	// Msg says what is wrong, without the path.
	Msg string
}

// String formats p as "LINE: PATH: MSG", leaving out what is unknown.
func (p Problem) String() string { return p.format("") }

// format formats p as "SOURCE:LINE: PATH: MSG".
func (p Problem) format(source string) string {
	var b strings.Builder
	b.WriteString(source)
	if p.Line > 0 {
		if source != "" {
			b.WriteByte(':')
		} else {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(p.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ConfigError is every problem found in one board config. Parse, Load,
// Validate and SetNode return it (as error); use errors.As to get at the
// problems.
type ConfigError struct {
	// Source names the config: the file name given to Load, the source given
	// to Parse, or "" for a config built in code.
	Source string
	// Problems are in source order (by line; problems without a line last).
	Problems []Problem
}

// Error lists the problems one per line, each as
// "SOURCE:LINE: PATH: MSG", for example
//
//	configs/x.yaml:7: peers[1].addr: "localhost" is not host:port: missing port
func (e *ConfigError) Error() string {
	lines := e.Lines()
	if len(lines) == 0 {
		return "boards: invalid config " + e.Source
	}
	return strings.Join(lines, "\n")
}

// Lines returns the problems formatted as in Error, one string each.
func (e *ConfigError) Lines() []string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.format(e.Source)
	}
	return lines
}
