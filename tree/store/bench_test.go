package store

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

func BenchmarkAppendInterval(b *testing.B) {
	for _, k := range fsKinds {
		b.Run(k.name, func(b *testing.B) {
			fsys := k.make(b)
			m, _ := fsys.(*MemFS)
			s, _ := mustOpen(b, fsys, Options{Sync: SyncInterval})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			rec := bytes.Repeat([]byte("r"), 100)
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := s.Append(rec); err != nil {
					b.Fatal(err)
				}
				if n++; m != nil && n%(1<<20) == 0 {
					// MemFS keeps every byte in RAM: bound it.
					b.StopTimer()
					if err := s.Flush(); err != nil {
						b.Fatal(err)
					}
					if err := m.Truncate("log-000000000001.ekv", 0); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			}
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkAppendAlways(b *testing.B) {
	s, _ := mustOpen(b, DirFS(filepath.Join(b.TempDir(), "data")), Options{Sync: SyncAlways})
	rec := bytes.Repeat([]byte("r"), 100)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(rec); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkStoreSnapshotWrite(b *testing.B) {
	const n, size = 1_000_000, 60
	s, _ := mustOpen(b, DirFS(filepath.Join(b.TempDir(), "data")), Options{Sync: SyncInterval})
	rec := bytes.Repeat([]byte("v"), size)
	records := func(yield func([]byte) error) error {
		for range n {
			if err := yield(rec); err != nil {
				return err
			}
		}
		return nil
	}
	b.SetBytes(n * size)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Snapshot(records); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}
