package broker

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/edgekv/edgekv/tree"
)

// maxTopicBytes is the longest MQTT topic name (a two-byte length prefix).
const maxTopicBytes = 65535

// TopicForPath returns the MQTT topic of path p below prefix: the prefix, then
// one topic level per element, each encoded as doc.go ("KV topics")
// describes. The empty path is the bare prefix. Paths in the meta tree (nil
// first element), invalid paths, string elements that are not valid UTF-8
// and topics longer than 65535 bytes are refused with an error wrapping
// tree.ErrInvalidPath.
func TopicForPath(prefix string, p tree.Path) (string, error) {
	if p.IsMeta() {
		return "", fmt.Errorf("%w: the meta tree has no MQTT topics", tree.ErrInvalidPath)
	}
	if err := p.Check(); err != nil {
		return "", err
	}
	b := make([]byte, 0, len(prefix)+16*len(p))
	b = append(b, prefix...)
	for i, e := range p {
		b = append(b, '/')
		var err error
		if b, err = appendLevel(b, e); err != nil {
			return "", fmt.Errorf("%w: element %d: %v", tree.ErrInvalidPath, i, err)
		}
	}
	if len(b) > maxTopicBytes {
		return "", fmt.Errorf("%w: topic would be %d bytes long (MQTT allows %d)", tree.ErrInvalidPath, len(b), maxTopicBytes)
	}
	return string(b), nil
}

// checkTopicPath returns the error TopicForPath(prefix, p) would, without
// building the topic (for a change that nobody subscribes to).
func checkTopicPath(prefix string, p tree.Path) error {
	if p.IsMeta() {
		return fmt.Errorf("%w: the meta tree has no MQTT topics", tree.ErrInvalidPath)
	}
	if err := p.Check(); err != nil {
		return err
	}
	n := len(prefix)
	var buf [64]byte
	for i, e := range p {
		b, err := appendLevel(buf[:0], e)
		if err != nil {
			return fmt.Errorf("%w: element %d: %v", tree.ErrInvalidPath, i, err)
		}
		n += 1 + len(b)
	}
	if n > maxTopicBytes {
		return fmt.Errorf("%w: topic would be %d bytes long (MQTT allows %d)", tree.ErrInvalidPath, n, maxTopicBytes)
	}
	return nil
}

// appendLevel appends the topic level of one element.
func appendLevel(b []byte, e tree.Elem) ([]byte, error) {
	switch e.Kind() {
	case tree.KindString:
		s := e.StrVal()
		if s == "" {
			return append(b, ":e"...), nil
		}
		if !utf8.ValidString(s) {
			return b, fmt.Errorf("string %q is not valid UTF-8", s)
		}
		if s[0] == '$' {
			b = append(b, ":."...)
		}
		for i := 0; i < len(s); i++ {
			switch c := s[i]; c {
			case ':':
				b = append(b, "::"...)
			case '/':
				b = append(b, ":_"...)
			case '+':
				b = append(b, ":p"...)
			case '#':
				b = append(b, ":h"...)
			case 0:
				b = append(b, ":z"...)
			default:
				b = append(b, c)
			}
		}
		return b, nil
	case tree.KindBytes:
		b = append(b, ":y"...)
		return hex.AppendEncode(b, []byte(e.StrVal())), nil
	case tree.KindBool, tree.KindInt, tree.KindFloat:
		// MoaT path text (":42", ":t", ":1:.5", ":1e+16", ":-inf") with
		// the dot unescaped and the exponent's '+' dropped.
		txt := tree.Path{e}.String()
		if e.Kind() == tree.KindFloat {
			txt = strings.ReplaceAll(txt, ":.", ".")
			txt = strings.Replace(txt, "e+", "e", 1)
		}
		return append(b, txt...), nil
	}
	return b, fmt.Errorf("element of kind %v has no topic level", e.Kind())
}

// PathForTopic is the inverse of TopicForPath: it returns the path whose
// topic below prefix is topic. Only the canonical encoding is accepted, so
// that every path has exactly one topic: whenever PathForTopic succeeds,
// TopicForPath gives topic back. Errors wrap tree.ErrInvalidPath and name
// the offending level.
func PathForTopic(prefix, topic string) (tree.Path, error) {
	rest, ok := strings.CutPrefix(topic, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return nil, fmt.Errorf("%w: topic %q is not below %q", tree.ErrInvalidPath, topic, prefix)
	}
	if rest == "" {
		return tree.Path{}, nil
	}
	rest = rest[1:]
	n := strings.Count(rest, "/") + 1
	if n > tree.MaxPathLen {
		return nil, fmt.Errorf("%w: topic has %d levels below the prefix (at most %d)", tree.ErrInvalidPath, n, tree.MaxPathLen)
	}
	p := make(tree.Path, 0, n)
	for i, level := range strings.Split(rest, "/") {
		e, err := parseLevel(level)
		if err != nil {
			return nil, fmt.Errorf("%w: level %d %q: %v", tree.ErrInvalidPath, i+1, level, err)
		}
		p = append(p, e)
	}
	// Reject every non-canonical spelling (":x10", ":1.50", ":y0A", an
	// unshielded '$', ...): the topic must be exactly what TopicForPath
	// makes of the path.
	back, err := TopicForPath(prefix, p)
	if err != nil {
		return nil, err
	}
	if back != topic {
		return nil, fmt.Errorf("%w: topic %q is not in canonical form (expected %q)", tree.ErrInvalidPath, topic, back)
	}
	return p, nil
}

// parseLevel decodes one topic level; PathForTopic checks canonical form.
func parseLevel(level string) (tree.Elem, error) {
	switch {
	case level == "":
		return tree.Elem{}, fmt.Errorf("empty level (the empty string is \":e\")")
	case level == ":e":
		return tree.Str(""), nil
	case level[0] != ':' || (len(level) > 1 && strings.IndexByte("_:.phz", level[1]) >= 0):
		return parseStringLevel(level)
	}
	// A non-string element in path syntax: restore the dot escape.
	p, err := tree.ParsePath(strings.ReplaceAll(level, ".", ":."))
	if err != nil {
		return tree.Elem{}, err
	}
	if len(p) != 1 {
		return tree.Elem{}, fmt.Errorf("not a single element")
	}
	switch k := p[0].Kind(); k {
	case tree.KindBool, tree.KindInt, tree.KindFloat, tree.KindBytes:
		return p[0], nil
	default:
		return tree.Elem{}, fmt.Errorf("%v element not allowed here", k)
	}
}

// parseStringLevel decodes a string level: "::" ':', ":_" '/', ":p" '+',
// ":h" '#', ":z" NUL, and a leading ":." that shields a leading '$'.
func parseStringLevel(level string) (tree.Elem, error) {
	if !utf8.ValidString(level) {
		return tree.Elem{}, fmt.Errorf("not valid UTF-8")
	}
	if level[0] == '$' {
		return tree.Elem{}, fmt.Errorf("a leading '$' must be written \":.$\"")
	}
	b := make([]byte, 0, len(level))
	for i := 0; i < len(level); i++ {
		c := level[i]
		if c != ':' {
			b = append(b, c)
			continue
		}
		if i+1 == len(level) {
			return tree.Elem{}, fmt.Errorf("ends with ':'")
		}
		i++
		switch level[i] {
		case ':':
			b = append(b, ':')
		case '_':
			b = append(b, '/')
		case 'p':
			b = append(b, '+')
		case 'h':
			b = append(b, '#')
		case 'z':
			b = append(b, 0)
		case '.':
			if i != 1 || len(level) < 3 || level[2] != '$' {
				return tree.Elem{}, fmt.Errorf("\":.\" is allowed only before a leading '$'")
			}
		default:
			return tree.Elem{}, fmt.Errorf("unknown escape %q at byte %d", level[i-1:i+1], i-1)
		}
	}
	return tree.Str(string(b)), nil
}

// underPrefix reports whether topic is prefix or lies below it.
func underPrefix(topic, prefix string) bool {
	return strings.HasPrefix(topic, prefix) && (len(topic) == len(prefix) || topic[len(prefix)] == '/')
}

// checkTopicPrefix reports why s cannot be a topic prefix: it must be a
// valid topic name of non-empty levels, without wildcards or NUL, and not
// start with '$'.
func checkTopicPrefix(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty")
	case !utf8.ValidString(s):
		return fmt.Errorf("not valid UTF-8")
	case strings.ContainsAny(s, "+#\x00"):
		return fmt.Errorf("contains '+', '#' or NUL")
	case s[0] == '$':
		return fmt.Errorf("starts with '$'")
	case s[0] == '/' || s[len(s)-1] == '/' || strings.Contains(s, "//"):
		return fmt.Errorf("has an empty level")
	}
	return nil
}

// checkLevelName reports why s cannot be one topic level naming a node or
// peer.
func checkLevelName(s string) error {
	if err := checkTopicPrefix(s); err != nil {
		return err
	}
	if strings.Contains(s, "/") {
		return fmt.Errorf("contains '/'")
	}
	return nil
}
