package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// fillNode sets n entries p.<i> (value(i), or the int i) through the
// client protocol over 8 connections.
func fillNode(t *testing.T, addr string, n int, value func(i int) []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const conns = 8
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := kvclient.Dial(ctx, addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := w; i < n; i += conns {
				v := msgp.AppendInt(nil, i)
				if value != nil {
					v = value(i)
				}
				if _, err := c.Set(ctx, tree.Path{tree.Str("p"), tree.Int(int64(i))}, v, kvclient.WriteOpts{}); err != nil {
					errs <- fmt.Errorf("set p.%d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Probe: a new "kv/#" subscriber of a node holding 50,000 entries gets
// every one of them as a retained message, at QoS 0, at QoS 1 over MQTT
// 3.1.1 and at QoS 1 over MQTT 5 (mosquitto_sub as the client; before the
// node paced retained delivery itself it got about 40,000, 8,192 and 40).
func TestProbeRetainedOnSubscribe(t *testing.T) {
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	p, port, addr := probeNode(t, "ret", "")
	const n = 50_000
	start := time.Now()
	fillNode(t, addr, n, nil)
	t.Logf("%d entries set in %v", n, time.Since(start).Round(time.Millisecond))
	for _, tc := range []struct{ name, version, qos string }{
		{"qos0-v5", "mqttv5", "0"},
		{"qos1-v311", "mqttv311", "1"},
		{"qos1-v5", "mqttv5", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-V", tc.version,
				"-q", tc.qos, "-t", "kv/p/#", "-C", fmt.Sprint(n), "-W", "60", "-F", "%t %r")
			cmd.Stdout, cmd.Stderr = &out, &errb
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			seen := make(map[string]bool, n)
			for line := range strings.Lines(out.String()) {
				topic, retained, _ := strings.Cut(strings.TrimSpace(line), " ")
				if retained != "1" {
					t.Fatalf("%s arrived without the retain flag", topic)
				}
				seen[topic] = true
			}
			t.Logf("%s: %d distinct of %d in %v", tc.name, len(seen), n, took.Round(time.Millisecond))
			if err != nil || len(seen) != n {
				t.Fatalf("mosquitto_sub: %v %s; %d of %d retained entries received", err, errb.String(), len(seen), n)
			}
		})
	}
	select {
	case <-p.done:
		t.Fatalf("node died: %v", p.exitErr)
	default:
	}
}
