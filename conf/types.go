package conf

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in config files as a Go duration string ("250ms", "1m30s").
// A bare integer is rejected: "timeout: 5" is ambiguous (seconds? milliseconds?) and a silent
// nanosecond reading turns a typo into an outage.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler. Problems are returned as *yaml.TypeError so the
// decoder keeps going and Parse can report every bad value, not only the first.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "expected a duration such as \"2s\", got a %s", kindName(n))
	}
	switch n.ShortTag() {
	case "!!null":
		*d = 0
		return nil
	case "!!int", "!!float":
		// "0" is unambiguous whatever the unit, so it is the one number we accept.
		if v, err := strconv.ParseFloat(n.Value, 64); err == nil && v == 0 {
			*d = 0
			return nil
		}
		return typeErr(n, "invalid duration `%s`: a number needs a unit, e.g. \"%ss\" or \"%sms\"", n.Value, n.Value, n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, numErr := strconv.ParseFloat(n.Value, 64); numErr == nil {
			return typeErr(n, "invalid duration `%s`: a number needs a unit, e.g. \"%ss\" or \"%sms\"", n.Value, n.Value, n.Value)
		}
		return typeErr(n, "invalid duration `%s`: use Go syntax such as \"250ms\", \"2s\", \"1m30s\"", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler; durations round-trip as strings.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ByteSize is a size in bytes. Config files may write an integer or a string with a unit:
// B, KiB, MiB, GiB, TiB (1024-based) or KB, MB, GB, TB (1000-based).
type ByteSize int64

// ParseByteSize parses "512", "512B", "64KiB", "10MiB", "1GiB", "5MB". Units are case-sensitive
// because "Mb" (megabit) and "MB" differ by 8x.
func ParseByteSize(s string) (ByteSize, error) {
	// Ordered so "KiB" is tried before "B".
	units := [...]struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"B", 1},
	}
	s = strings.TrimSpace(s)
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	if num == "" || strings.IndexFunc(num, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, fmt.Errorf("invalid size %q: want a whole number with an optional unit B, KiB, MiB, GiB, TiB, KB, MB, GB or TB", s)
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v > (1<<63-1)/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(v * mult), nil
}

// UnmarshalYAML implements yaml.Unmarshaler (see Duration.UnmarshalYAML for the error contract).
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "expected a size such as 65536 or \"64KiB\", got a %s", kindName(n))
	}
	switch n.ShortTag() {
	case "!!null":
		*b = 0
		return nil
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil {
			return typeErr(n, "invalid size `%s`: %v", n.Value, err)
		}
		*b = ByteSize(v)
		return nil
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return typeErr(n, "invalid size `%s`: want a whole number with an optional unit B, KiB, MiB, GiB, TiB, KB, MB, GB or TB", n.Value)
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler; sizes are written as plain integers.
func (b ByteSize) MarshalYAML() (any, error) { return int64(b), nil }

// typeErr formats like yaml.v3's own errors ("line N: ...") so Parse maps it back to a key path
// the same way; the value in backticks lets it pick the right node when a line holds several.
func typeErr(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	case yaml.AliasNode:
		return "alias"
	default:
		return "scalar"
	}
}
