package kvproto

import (
	"bytes"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// The greeting without auth is MoaT-KV's six keys; with auth it adds
// MoaT-KV's auth list, a leading None meaning "login not required".
func TestHelloAuth(t *testing.T) {
	h := Hello{Node: "n1", Tick: 3, Tock: 7, QLen: 10}
	plain := AppendHello(nil, h)
	if m := decode(t, plain); len(m) != 6 || m["auth"] != nil {
		t.Fatalf("greeting without auth: %v", m)
	}
	h.Auth = []string{"", "password", "root"}
	b := AppendHello(nil, h)
	if !bytes.HasPrefix(b[1:], plain[1:]) {
		t.Fatalf("the auth greeting does not extend the plain one:\n% x\n% x", b, plain)
	}
	m := decode(t, b)
	auth, ok := m["auth"].([]any)
	if !ok || len(auth) != 3 || auth[0] != nil || auth[1] != "password" || auth[2] != "root" {
		t.Fatalf("auth = %#v, want [nil password root]", m["auth"])
	}
	h.Auth = []string{"password"}
	if m := decode(t, AppendHello(nil, h)); len(m["auth"].([]any)) != 1 || m["auth"].([]any)[0] != "password" {
		t.Fatalf("auth = %#v, want [password]", m["auth"])
	}
	if _, err := msgp.Skip(b); err != nil {
		t.Fatal(err)
	}
}
