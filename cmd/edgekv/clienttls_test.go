package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/internal/testcert"
	"github.com/edgekv/edgekv/tree"
)

// tlsTestCert writes a self-signed certificate for 127.0.0.1 (IP SAN) and
// its key into dir and returns the files and a client config trusting it.
func tlsTestCert(t *testing.T, dir string) (certFile, keyFile string, client *tls.Config) {
	t.Helper()
	p := testcert.Write(t, dir)
	return p.CertFile, p.KeyFile, p.Client()
}

// tlsNodeConfig is a lone node's config with the plain client listener on
// clientAddr and a TLS one on tlsAddr.
func tlsNodeConfig(t *testing.T, name, dir string, mqttPort int, clientAddr, tlsAddr, certFile, keyFile string) *boards.Config {
	c := boards.DefaultConfig(name)
	c.Data.Dir = filepath.Join(dir, "data")
	c.Listen.MQTT = []string{fmt.Sprintf("127.0.0.1:%d", mqttPort)}
	c.Listen.Client = clientAddr
	c.Listen.ClientTLS = []boards.TLSListener{{Addr: tlsAddr, Cert: certFile, Key: keyFile}}
	c.Sync.Heartbeat = boards.Duration(200 * time.Millisecond)
	c.LogLevel = boards.LogWarn
	return c
}

// TestClientTLSListener: a node serves the client protocol on its plain
// listener and its TLS listener, one tree behind both. A plain client on
// the TLS port and a client that does not trust the certificate fail
// cleanly, and the node carries on.
func TestClientTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, trust := tlsTestCert(t, dir)
	port := ports(t, 1)[0]
	bn := runBenchNode(t, tlsNodeConfig(t, "tls1", dir, port, "127.0.0.1:0", "127.0.0.1:0", certFile, keyFile), port)
	if len(bn.n.ClientAddrs()) != 2 {
		t.Fatalf("client listeners %v, want a plain one and a TLS one", bn.n.ClientAddrs())
	}
	tlsAddr := bn.n.ClientAddrs()[1].String()
	plainAddr := bn.clientAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	c, err := kvclient.DialWith(ctx, tlsAddr, kvclient.DialOptions{TLS: trust})
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	defer c.Close()
	if c.Hello().Node != "tls1" {
		t.Fatalf("hello %+v", c.Hello())
	}
	p := tree.Path{tree.Str("secure"), tree.Str("x")}
	if _, err := c.Set(ctx, p, msgp.AppendString(nil, "over tls"), kvclient.WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	// The plain listener serves the same tree.
	plain, err := kvclient.Dial(ctx, plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if e, found, err := plain.Get(ctx, p, 1); err != nil || !found || string(e.Value) != string(msgp.AppendString(nil, "over tls")) {
		t.Fatalf("plain get of a TLS write: %+v %v %v", e, found, err)
	}
	// A watch over TLS sees a write made on the plain listener.
	wctx, wcancel := context.WithCancel(ctx)
	got := make(chan kvclient.Item, 10)
	go c.Watch(wctx, tree.Path{tree.Str("secure")}, true, func(it kvclient.Item) error {
		got <- it
		return nil
	})
	if it := <-got; it.Path.String() != "secure.x" {
		t.Fatalf("watch initial: %+v", it)
	}
	if it := <-got; !it.UpToDate {
		t.Fatalf("watch uptodate: %+v", it)
	}
	if _, err := plain.Set(ctx, tree.Path{tree.Str("secure"), tree.Str("y")}, msgp.AppendInt(nil, 1), kvclient.WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	if it := <-got; it.Path.String() != "secure.y" {
		t.Fatalf("watch change: %+v", it)
	}
	wcancel()

	t.Run("plain client on the TLS port", func(t *testing.T) {
		start := time.Now()
		_, err := kvclient.DialWith(ctx, tlsAddr, kvclient.DialOptions{Timeout: 500 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "TLS listener") {
			t.Fatalf("err = %v, want no greeting and a hint at TLS", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("TLS client on the plain port", func(t *testing.T) {
		_, err := kvclient.DialWith(ctx, plainAddr, kvclient.DialOptions{TLS: trust})
		if err == nil || !strings.Contains(err.Error(), "tls:") {
			t.Fatalf("err = %v, want a TLS handshake failure", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		_, _, other := tlsTestCert(t, t.TempDir())
		_, err := kvclient.DialWith(ctx, tlsAddr, kvclient.DialOptions{TLS: other})
		var ve *tls.CertificateVerificationError
		if !errors.As(err, &ve) {
			t.Fatalf("err = %v, want a certificate verification error", err)
		}
	})
	// None of that hurt the node.
	if _, found, err := c.Get(ctx, p, 0); err != nil || !found {
		t.Fatalf("get after the failed clients: %v %v", found, err)
	}
}

// TestClientTLSBadKeyAtStart: a key file that is not PEM fails at start,
// naming the setting.
func TestClientTLSBadKeyAtStart(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := tlsTestCert(t, dir)
	bad := filepath.Join(dir, "bad-key.pem")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := tlsNodeConfig(t, "badkey", dir, 0, "", "127.0.0.1:0", certFile, bad)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v (the file exists and is readable)", err)
	}
	c.Data.Dir = filepath.Join(dir, "badkey-data")
	_, err := edgekv.New(c, edgekv.Options{})
	if err == nil || !strings.Contains(err.Error(), "listen.client_tls[0]") || !strings.Contains(err.Error(), "bad-key.pem") {
		t.Fatalf("edgekv.New = %v, want an error naming listen.client_tls[0] and the key", err)
	}
}

// itemText is a watch item as text, for comparing sequences.
func itemText(it kvclient.Item) string {
	switch {
	case it.UpToDate:
		return "uptodate"
	case it.Value == nil:
		return it.Path.String() + " deleted"
	}
	v, _, err := msgp.ReadIntfBytes(it.Value)
	if err != nil {
		return it.Path.String() + " undecodable"
	}
	return fmt.Sprintf("%s=%v", it.Path, v)
}

// TestReconnectingNodeRestart: a real node stops and starts again on the
// same ports (over TLS). The reconnecting client's reads and writes work
// once it is back; its watch delivers every later change once, with no
// duplicate of what it had seen and one UpToDate.
func TestReconnectingNodeRestart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, trust := tlsTestCert(t, dir)
	ps := ports(t, 2)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", ps[1])
	cfg := tlsNodeConfig(t, "phoenix", dir, ps[0], "", tlsAddr, certFile, keyFile)
	bn := runBenchNode(t, cfg, ps[0])

	r := kvclient.NewReconnecting(tlsAddr, kvclient.ReconnectOptions{
		DialOptions: kvclient.DialOptions{TLS: trust},
		MinBackoff:  20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := func(s string) tree.Path { return tree.Path{tree.Str("r"), tree.Str(s)} }
	for _, s := range []string{"a", "b", "keep"} {
		if _, err := r.Set(ctx, k(s), msgp.AppendInt(nil, 1), kvclient.WriteOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan string, 100)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	werr := make(chan error, 1)
	go func() {
		werr <- r.Watch(wctx, tree.Path{tree.Str("r")}, true, func(it kvclient.Item) error {
			got <- itemText(it)
			return nil
		})
	}()
	next := func() string {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(15 * time.Second):
			t.Fatal("no watch item within 15 s")
			return ""
		}
	}
	for _, want := range []string{"r.a=1", "r.b=1", "r.keep=1", "uptodate"} {
		if s := next(); s != want {
			t.Fatalf("watch: %q, want %q", s, want)
		}
	}

	bn.stop()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err := r.Get(short, k("a"), 0)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get while the node is down: %v, want the deadline", err)
	}
	bn = runBenchNode(t, cfg, ps[0])
	// Changes right after the restart, racing the watch's reconnect: it
	// sees each once, live or from its re-fetch.
	if err := bn.Write(ctx, k("b"), msgp.AppendInt(nil, 2)); err != nil {
		t.Fatal(err)
	}
	if err := bn.Write(ctx, k("a"), nil); err != nil {
		t.Fatal(err)
	}
	if e, found, err := r.Get(ctx, k("b"), 1); err != nil || !found || e.Chain[0].Node != "phoenix" {
		t.Fatalf("get after restart: %+v %v %v", e, found, err)
	}
	if _, err := r.Set(ctx, k("c"), msgp.AppendInt(nil, 1), kvclient.WriteOpts{}); err != nil {
		t.Fatalf("set after restart: %v", err)
	}
	if _, err := r.Set(ctx, k("end"), msgp.AppendInt(nil, 1), kvclient.WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	// In some order: a deletion the watch makes up (when it learned of it
	// from its re-fetch) comes after the re-fetched entries.
	want := []string{"r.a deleted", "r.b=2", "r.c=1", "r.end=1"}
	var seen []string
	for len(seen) < len(want) {
		seen = append(seen, next())
	}
	slices.Sort(seen)
	if !slices.Equal(seen, want) {
		t.Fatalf("watch across the restart saw %q, want each of %q once", seen, want)
	}
	select {
	case s := <-got:
		t.Fatalf("extra watch item %q", s)
	case <-time.After(300 * time.Millisecond):
	}
	wcancel()
	if err := <-werr; !errors.Is(err, context.Canceled) {
		t.Fatalf("watch ended with %v", err)
	}
}

// TestE2EClientTLS: a real edgekv process with listen.client_tls; the CLI
// and the Go client talk to it over TLS. A plain CLI on the TLS port, a
// certificate the CLI does not trust, and a node that cannot load its key
// all fail with clear errors and the documented exit statuses.
func TestE2EClientTLS(t *testing.T) {
	bin := edgekvBinary(t)
	dir := t.TempDir()
	certFile, keyFile, trust := tlsTestCert(t, dir)
	ps := freePorts(t, 3)
	mqttPort, plainPort, tlsPort := ps[0], ps[1], ps[2]
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	writeCfg := func(name, key string) string {
		path := filepath.Join(dir, name+".yaml")
		yaml := fmt.Sprintf("node: %s\ndata: {dir: %q}\nlisten:\n  mqtt: [\"127.0.0.1:%d\"]\n  client: \"127.0.0.1:%d\"\n  client_tls:\n    - {addr: %q, cert: %q, key: %q}\n",
			name, filepath.Join(dir, "data-"+name), mqttPort, plainPort, tlsAddr, certFile, key)
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	edgekv := func(want int, args ...string) (string, string) {
		t.Helper()
		out, errOut, code := runBinary(t, bin, args...)
		if code != want {
			t.Fatalf("edgekv %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out, errOut)
		}
		return out, errOut
	}

	// A missing key: config check names the setting, and so does run.
	missing := writeCfg("nokey", filepath.Join(dir, "no-such-key.pem"))
	if out, _ := edgekv(1, "config", "check", missing); !strings.Contains(out, "listen.client_tls[0].key: file") || !strings.Contains(out, "does not exist") {
		t.Fatalf("config check of a missing key: %q", out)
	}
	if _, errOut := edgekv(1, "run", "-n", "nokey", "-c", missing); !strings.Contains(errOut, "listen.client_tls[0].key") {
		t.Fatalf("run with a missing key: %q", errOut)
	}
	// A key that is no PEM passes config check (it is not parsed there)
	// and fails at start.
	junk := filepath.Join(dir, "junk-key.pem")
	if err := os.WriteFile(junk, []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut := edgekv(1, "run", "-n", "junk", "-c", writeCfg("junk", junk)); !strings.Contains(errOut, "listen.client_tls[0]") || !strings.Contains(errOut, "junk-key.pem") {
		t.Fatalf("run with a junk key: %q", errOut)
	}

	cfg := writeCfg("tlscli", keyFile)
	edgekv(0, "config", "check", cfg)
	startNode(t, "tlscli", cfg, mqttPort)
	waitPort(t, tlsPort)

	edgekv(0, "set", "room.secure", "42", "-s", tlsAddr, "--ca", certFile)
	if out, _ := edgekv(0, "get", "room.secure", "-s", tlsAddr, "--tls", "--ca", certFile); strings.TrimSpace(out) != "42" {
		t.Fatalf("get over TLS = %q", out)
	}
	if out, _ := edgekv(0, "get", "room.secure", "-s", tlsAddr, "--insecure", "-o", "json"); strings.TrimSpace(out) != "42" {
		t.Fatalf("get --insecure = %q", out)
	}
	// The plain listener is still there, on the same tree.
	if out, _ := edgekv(0, "get", "room.secure", "-s", fmt.Sprintf("127.0.0.1:%d", plainPort)); strings.TrimSpace(out) != "42" {
		t.Fatalf("plain get = %q", out)
	}
	// The Go client, over TLS, to the process.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := kvclient.DialWith(ctx, tlsAddr, kvclient.DialOptions{TLS: trust})
	if err != nil {
		t.Fatal(err)
	}
	e, found, err := c.Get(ctx, tree.Path{tree.Str("room"), tree.Str("secure")}, 1)
	c.Close()
	if v, _, _ := msgp.ReadInt64Bytes(e.Value); err != nil || !found || v != 42 || e.Chain[0].Node != "tlscli" {
		t.Fatalf("Go client over TLS: %+v %v %v", e, found, err)
	}

	// Failures: exit 3 (server or connection), with the reason.
	otherCert, _, _ := tlsTestCert(t, t.TempDir())
	if _, errOut := edgekv(3, "get", "room.secure", "-s", tlsAddr, "--ca", otherCert); !strings.Contains(errOut, "certificate") {
		t.Fatalf("wrong CA: %q", errOut)
	}
	if _, errOut := edgekv(3, "get", "room.secure", "-s", tlsAddr, "--tls"); !strings.Contains(errOut, "certificate signed by unknown authority") {
		t.Fatalf("--tls with the system's CAs: %q", errOut)
	}
	if _, errOut := edgekv(3, "get", "room.secure", "-s", tlsAddr); !strings.Contains(errOut, "TLS listener") {
		t.Fatalf("plain on the TLS port: %q", errOut)
	}
	if _, errOut := edgekv(3, "get", "room.secure", "-s", fmt.Sprintf("127.0.0.1:%d", plainPort), "--ca", certFile); !strings.Contains(errOut, "tls:") {
		t.Fatalf("TLS on the plain port: %q", errOut)
	}
	if _, errOut := edgekv(2, "get", "room.secure", "-s", tlsAddr, "--ca", filepath.Join(dir, "no-such-ca.pem")); !strings.Contains(errOut, "--ca") {
		t.Fatalf("missing --ca file: %q", errOut)
	}
}
