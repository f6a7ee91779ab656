package conf

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: `250ms`, want: 250 * time.Millisecond},
		{in: `"2s"`, want: 2 * time.Second},
		{in: `1m30s`, want: 90 * time.Second},
		{in: `0`, want: 0},
		{in: `~`, want: 0},
		{in: `-1s`, want: -time.Second}, // parses; validation rejects it with a path
		{in: `5`, wantErr: `invalid duration ` + "`5`" + `: a number needs a unit, e.g. "5s"`},
		{in: `"5"`, wantErr: `a number needs a unit`},
		{in: `1.5`, wantErr: `a number needs a unit`},
		{in: `5 s`, wantErr: `use Go syntax`},
		{in: `fast`, wantErr: `use Go syntax`},
		{in: `[1s]`, wantErr: `got a sequence`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "line 1:") {
					t.Fatalf("err = %v, want a line number", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.D.D() != tt.want {
				t.Fatalf("got %v, want %v", v.D.D(), tt.want)
			}
		})
	}
}

func TestByteSizeYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{in: `65536`, want: 65536},
		{in: `0`, want: 0},
		{in: `"512B"`, want: 512},
		{in: `512`, want: 512},
		{in: `64KiB`, want: 64 << 10},
		{in: `10MiB`, want: 10 << 20},
		{in: `1GiB`, want: 1 << 30},
		{in: `2TiB`, want: 2 << 40},
		{in: `"10 MiB"`, want: 10 << 20},
		{in: `5KB`, want: 5000},
		{in: `5MB`, want: 5_000_000},
		{in: `1GB`, want: 1_000_000_000},
		{in: `"1024"`, want: 1024},
		{in: `10mb`, wantErr: "invalid size `10mb`"},
		{in: `1.5MiB`, wantErr: "invalid size"},
		{in: `MiB`, wantErr: "invalid size"},
		{in: `-1KiB`, wantErr: "invalid size"},
		{in: `99999999999TiB`, wantErr: "invalid size"},
		{in: `{a: 1}`, wantErr: "got a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var v struct {
				B ByteSize `yaml:"b"`
			}
			err := yaml.Unmarshal([]byte("b: "+tt.in), &v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.B != tt.want {
				t.Fatalf("got %d, want %d", v.B, tt.want)
			}
		})
	}
}

func TestMarshalTypes(t *testing.T) {
	t.Parallel()
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
		B ByteSize `yaml:"b"`
	}{Duration(90 * time.Second), 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "d: 1m30s\nb: 65536\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
