package broker

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/tree"
)

var topicCases = []struct {
	name  string
	path  tree.Path
	topic string
}{
	{"root", tree.Path{}, "kv"},
	{"plain", tree.Path{tree.Str("home"), tree.Str("kitchen"), tree.Str("temp")}, "kv/home/kitchen/temp"},
	{"dots and spaces", tree.Path{tree.Str("a.b c")}, "kv/a.b c"},
	{"slash", tree.Path{tree.Str("a/b")}, "kv/a:_b"},
	{"colon", tree.Path{tree.Str("a:b"), tree.Str(":x")}, "kv/a::b/::x"},
	{"leading dollar", tree.Path{tree.Str("$SYS"), tree.Str("a$")}, "kv/:.$SYS/a$"},
	{"lone dollar", tree.Path{tree.Str("$")}, "kv/:.$"},
	{"wildcards", tree.Path{tree.Str("+"), tree.Str("#"), tree.Str("a+b#c")}, "kv/:p/:h/a:pb:hc"},
	{"empty string", tree.Path{tree.Str(""), tree.Str("x")}, "kv/:e/x"},
	{"nul", tree.Path{tree.Str("a\x00b")}, "kv/a:zb"},
	{"unicode", tree.Path{tree.Str("Küche"), tree.Str("温度")}, "kv/Küche/温度"},
	{"looks like escapes", tree.Path{tree.Str(":e"), tree.Str(":t"), tree.Str(":1")}, "kv/::e/::t/::1"},
	{"int", tree.Path{tree.Int(42), tree.Int(-7), tree.Int(0)}, "kv/:42/:-7/:0"},
	{"int extremes", tree.Path{tree.Int(math.MaxInt64), tree.Int(math.MinInt64)}, "kv/:9223372036854775807/:-9223372036854775808"},
	{"bool", tree.Path{tree.Bool(true), tree.Bool(false)}, "kv/:t/:f"},
	{"float", tree.Path{tree.Float(1.5), tree.Float(1), tree.Float(-0.25)}, "kv/:1.5/:1.0/:-0.25"},
	{"float exponent", tree.Path{tree.Float(1e16), tree.Float(1.5e-7), tree.Float(-2e100)}, "kv/:1e16/:1.5e-07/:-2e100"},
	{"float inf", tree.Path{tree.Float(math.Inf(1)), tree.Float(math.Inf(-1))}, "kv/:iinf/:-inf"},
	{"bytes", tree.Path{tree.Bytes([]byte{1, 0xff, 0x2f}), tree.Bytes(nil)}, "kv/:y01ff2f/:y"},
	{"mixed", tree.Path{tree.Str("home"), tree.Str("$sys"), tree.Str("a/b"), tree.Int(3), tree.Str("x+y"), tree.Str("")}, "kv/home/:.$sys/a:_b/:3/x:py/:e"},
	{"int vs float vs string", tree.Path{tree.Int(1), tree.Float(1), tree.Str("1")}, "kv/:1/:1.0/1"},
}

func TestTopicForPath(t *testing.T) {
	for _, tc := range topicCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TopicForPath("kv", tc.path)
			if err != nil {
				t.Fatalf("TopicForPath(%#v): %v", tc.path, err)
			}
			if got != tc.topic {
				t.Errorf("TopicForPath(%#v) = %q, want %q", tc.path, got, tc.topic)
			}
			back, err := PathForTopic("kv", got)
			if err != nil {
				t.Fatalf("PathForTopic(%q): %v", got, err)
			}
			if !back.Equal(tc.path) {
				t.Errorf("PathForTopic(%q) = %#v, want %#v", got, back, tc.path)
			}
			if strings.ContainsAny(got, "+#\x00") || strings.Contains(got, "//") || strings.HasSuffix(got, "/") {
				t.Errorf("topic %q is not a valid MQTT topic name", got)
			}
		})
	}
}

func TestTopicMultiLevelPrefix(t *testing.T) {
	p := tree.Path{tree.Str("a"), tree.Int(1)}
	topic, err := TopicForPath("moat/kv", p)
	if err != nil || topic != "moat/kv/a/:1" {
		t.Fatalf("TopicForPath = %q, %v", topic, err)
	}
	back, err := PathForTopic("moat/kv", topic)
	if err != nil || !back.Equal(p) {
		t.Fatalf("PathForTopic = %#v, %v", back, err)
	}
}

func TestTopicForPathErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		path tree.Path
	}{
		{"meta tree", tree.Path{tree.Nil(), tree.Str("acl")}},
		{"nil inside", tree.Path{tree.Str("a"), tree.Nil()}},
		{"NaN", tree.Path{tree.Float(math.NaN())}},
		{"invalid UTF-8", tree.Path{tree.Str("a\xffb")}},
		{"too long", tree.Path{tree.Str(strings.Repeat("x", 70000))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TopicForPath("kv", tc.path)
			if !errors.Is(err, tree.ErrInvalidPath) {
				t.Fatalf("TopicForPath(%#v) = %v, want ErrInvalidPath", tc.path, err)
			}
			if err2 := checkTopicPath("kv", tc.path); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("checkTopicPath(%#v) = %v, TopicForPath's error %v", tc.path, err2, err)
			}
		})
	}
}

func TestPathForTopicErrors(t *testing.T) {
	for _, topic := range []string{
		"other/a",                 // not below the prefix
		"kvx/a",                   // prefix must end at a level
		"kv/",                     // empty level
		"kv/a//b",                 // empty level
		"kv/$x",                   // unshielded '$'
		"kv/a:",                   // dangling escape
		"kv/a:q",                  // unknown escape
		"kv/a:.b",                 // ":." only before a leading '$'
		"kv/:.x",                  // ":." only before a leading '$'
		"kv/:n",                   // nil
		"kv/:x10",                 // non-canonical int
		"kv/:+5",                  // non-canonical int
		"kv/:007",                 // invalid int
		"kv/:1.50",                // non-canonical float
		"kv/:1e+16",               // non-canonical float
		"kv/:1:.5",                // dotted path text is not a topic level
		"kv/:inf",                 // non-canonical infinity
		"kv/:y0A",                 // non-canonical hex
		"kv/:sAQI=",               // bytes are hex in topics
		"kv/:True",                // non-canonical bool
		"kv/:t::x",                // two elements in one level
		"kv/:",                    // bare colon
		"kv/:e:e",                 // not one element
		"kv/:1_000",               // non-canonical int
		"kv/a\xffb",               // invalid UTF-8
		"kv/:-inf.0",              // junk
		"kv/:m",                   // marks
		"kv/" + ":1e400",          // out of range float spelled oddly
		"kv/:9223372036854775808", // int out of range
	} {
		if p, err := PathForTopic("kv", topic); err == nil {
			t.Errorf("PathForTopic(%q) = %#v, want an error", topic, p)
		} else if !errors.Is(err, tree.ErrInvalidPath) {
			t.Errorf("PathForTopic(%q): %v does not wrap ErrInvalidPath", topic, err)
		}
	}
}

func TestPathForTopicTooManyLevels(t *testing.T) {
	topic := "kv" + strings.Repeat("/a", tree.MaxPathLen+1)
	if _, err := PathForTopic("kv", topic); !errors.Is(err, tree.ErrInvalidPath) {
		t.Fatalf("PathForTopic(%d levels) = %v, want ErrInvalidPath", tree.MaxPathLen+1, err)
	}
	topic = "kv" + strings.Repeat("/a", tree.MaxPathLen)
	if _, err := PathForTopic("kv", topic); err != nil {
		t.Fatalf("PathForTopic(%d levels): %v", tree.MaxPathLen, err)
	}
}

func FuzzTopicPath(f *testing.F) {
	for _, tc := range topicCases {
		f.Add(tc.topic)
	}
	for _, s := range []string{"kv/:.$", "kv/:x10", "kv/a:", "kv/:y", "kv/:-0.0", "kv/:0.0", "kv/:1e-07"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		p, err := PathForTopic("kv", topic)
		if err != nil {
			if !errors.Is(err, tree.ErrInvalidPath) {
				t.Fatalf("PathForTopic(%q): %v does not wrap ErrInvalidPath", topic, err)
			}
			return
		}
		back, err := TopicForPath("kv", p)
		if err != nil {
			t.Fatalf("PathForTopic(%q) = %#v, but TopicForPath fails: %v", topic, p, err)
		}
		if err := checkTopicPath("kv", p); err != nil {
			t.Fatalf("checkTopicPath(%#v) = %v, TopicForPath gives %q", p, err, back)
		}
		if back != topic {
			t.Fatalf("PathForTopic(%q) = %#v, TopicForPath gives %q", topic, p, back)
		}
	})
}

// FuzzPathTopic starts from paths (parsed from MoaT path text): every path
// that has a topic round-trips through it.
func FuzzPathTopic(f *testing.F) {
	for _, tc := range topicCases {
		f.Add(tc.path.String())
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := tree.ParsePath(text)
		if err != nil {
			return
		}
		topic, err := TopicForPath("kv", p)
		if cerr := checkTopicPath("kv", p); (cerr == nil) != (err == nil) || (err != nil && cerr.Error() != err.Error()) {
			t.Fatalf("checkTopicPath(%#v) = %v, TopicForPath: %v", p, cerr, err)
		}
		if err != nil {
			if !errors.Is(err, tree.ErrInvalidPath) {
				t.Fatalf("TopicForPath(%#v): %v does not wrap ErrInvalidPath", p, err)
			}
			return
		}
		back, err := PathForTopic("kv", topic)
		if err != nil {
			t.Fatalf("TopicForPath(%#v) = %q, but PathForTopic fails: %v", p, topic, err)
		}
		if !back.Equal(p) {
			t.Fatalf("path %#v → %q → %#v", p, topic, back)
		}
	})
}
