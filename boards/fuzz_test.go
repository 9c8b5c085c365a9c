package boards

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// a *ConfigError with at least one problem, and that what it accepts
// survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, file := range exampleConfigs(f) {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, tt := range parseCases {
		f.Add([]byte(tt.yaml))
	}
	for _, tt := range validCases {
		f.Add([]byte(tt.yaml))
	}
	f.Add([]byte("a: &a [*a, *a, *a]\nb: &b [*a, *a, *a]\npeers: [*b, *b]\n"))
	f.Add([]byte("peers:\n  - &x {name: a, addr: \"h:1\", <<: *x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("Parse error %T %v: want a *ConfigError with problems", err, err)
			}
			_ = err.Error()
			return
		}
		text, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse(text, "marshalled")
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\ninput:\n%q\nmarshalled:\n%s", err, data, text)
		}
		if diff := cmp.Diff(c, back, cmpConfig...); diff != "" {
			t.Fatalf("round trip (-parsed +reparsed):\n%s\ninput:\n%q", diff, data)
		}
	})
}
