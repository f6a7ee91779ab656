package consuldev

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFindBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exe := filepath.Join(dir, "consul-exe")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "consul-plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Cached layouts, one per way the cache root can be chosen.
	cached := func(root string) string {
		p := filepath.Join(root, "consul-"+Version, "consul")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meshCache := cached(filepath.Join(dir, "mc"))
	xdgCache := cached(filepath.Join(dir, "xdg", "meshgate"))
	homeCache := cached(filepath.Join(dir, "home", ".cache", "meshgate"))

	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{name: "env override", env: map[string]string{EnvBinary: exe, "MESHGATE_CACHE": filepath.Join(dir, "mc")}, want: exe},
		{name: "env override missing", env: map[string]string{EnvBinary: filepath.Join(dir, "nope"), "MESHGATE_CACHE": filepath.Join(dir, "mc")}, wantErr: true},
		{name: "env override not executable", env: map[string]string{EnvBinary: plain}, wantErr: true},
		{name: "env override is a directory", env: map[string]string{EnvBinary: dir}, wantErr: true},
		{name: "MESHGATE_CACHE wins over XDG", env: map[string]string{"MESHGATE_CACHE": filepath.Join(dir, "mc"), "XDG_CACHE_HOME": filepath.Join(dir, "xdg")}, want: meshCache},
		{name: "XDG_CACHE_HOME wins over HOME", env: map[string]string{"XDG_CACHE_HOME": filepath.Join(dir, "xdg"), "HOME": filepath.Join(dir, "home")}, want: xdgCache},
		{name: "HOME", env: map[string]string{"HOME": filepath.Join(dir, "home")}, want: homeCache},
		{name: "cache without binary", env: map[string]string{"MESHGATE_CACHE": filepath.Join(dir, "empty")}, wantErr: true},
		{name: "nothing set", env: map[string]string{}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := findBinary(func(k string) string { return tc.env[k] })
			if tc.wantErr {
				if !errors.Is(err, ErrNoBinary) {
					t.Fatalf("findBinary() = %q, %v; want an error wrapping ErrNoBinary", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("findBinary() = %q, %v; want %q, nil", got, err, tc.want)
			}
		})
	}
}

func TestFreePortsDistinct(t *testing.T) {
	t.Parallel()
	p, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	all := []int{p.HTTP, p.DNS, p.SerfLAN, p.SerfWAN, p.Server, p.GRPC, p.GRPCTLS}
	seen := map[int]bool{}
	for _, port := range all {
		if port <= 0 || port > 65535 {
			t.Fatalf("port %d out of range in %+v", port, p)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice in %+v", port, p)
		}
		seen[port] = true
	}
}
