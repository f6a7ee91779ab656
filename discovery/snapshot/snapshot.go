package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery"
)

// formatVersion is bumped on incompatible changes; files of another version are ignored
// (treated as absent), which is always safe.
const formatVersion = 1

// KindServices is the directory endpoint sets are stored in.
const KindServices = "services"

// Log field names.
const (
	fieldComponent = "component"
	fieldPath      = "path"
	componentName  = "snapshot"
)

// ErrInvalidName is returned for an empty kind or name, or a kind that is not a plain
// directory name.
var ErrInvalidName = errors.New("invalid snapshot name")

// Options configure a Store.
type Options struct {
	// Dir is the snapshot directory; it is created (0700) if missing. Required.
	Dir string
	// Logger receives the reasons a snapshot file was ignored.
	Logger zerolog.Logger
	// Now is the clock for SavedAt; nil means time.Now.
	Now func() time.Time
}

// Store reads and writes snapshots under one directory. It is safe for concurrent use: every
// write goes to its own temp file and renames over the target, so concurrent writers of the
// same name leave one complete file (the last rename wins).
type Store struct {
	dir string
	log zerolog.Logger
	now func() time.Time
}

// New creates the directory if needed. It fails when the directory cannot be created, because
// a configured snapshot_dir that can never be written is a deployment error worth failing on.
func New(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("snapshot: dir is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Store{
		dir: opts.Dir,
		log: opts.Logger.With().Str(fieldComponent, componentName).Logger(),
		now: now,
	}, nil
}

// Dir is the snapshot directory.
func (s *Store) Dir() string { return s.dir }

// record is the on-disk form of one endpoint set.
type record struct {
	Version   int                  `json:"version"`
	Service   string               `json:"service"`
	Selector  string               `json:"selector,omitempty"`
	SavedAt   time.Time            `json:"saved_at"`
	Endpoints []discovery.Endpoint `json:"endpoints"`
	// Protocol is the set's Protocol, so a restart during a registry outage speaks to the
	// service as before. omitempty: files without it (older, or unset) mean "unset", so the
	// format version stays.
	Protocol string `json:"protocol,omitempty"`
}

// Save stores set under its service name with no selector.
func (s *Store) Save(set discovery.Set) error { return s.SaveSelected(set, "") }

// SaveSelected stores set under its service name, remembering selector (see LoadSelected). An
// empty set is stored too: it is a real answer ("no instances"), not a failure.
func (s *Store) SaveSelected(set discovery.Set, selector string) error {
	return s.SaveSelectedIn(KindServices, set, selector)
}

// SaveSelectedIn is SaveSelected into directory kind instead of KindServices. A file holds one
// set per service name, so two watches of one service that select different things and must
// both survive a restart (discovery/consul's plain and Connect sets) keep them in two kinds;
// the selector alone would only make them reject each other's file.
func (s *Store) SaveSelectedIn(kind string, set discovery.Set, selector string) error {
	eps := set.Endpoints
	if eps == nil {
		eps = []discovery.Endpoint{} // "endpoints": [] reads better than null, and decodes the same
	}
	data, err := json.MarshalIndent(record{
		Version: formatVersion, Service: set.Service, Selector: selector, SavedAt: s.now().UTC(), Endpoints: eps,
		Protocol: set.Protocol,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("snapshot: encode %q: %w", set.Service, err)
	}
	return s.SaveDoc(kind, set.Service+".json", data)
}

// Load returns the stored set of service (saved with no selector). The set's Source is
// "snapshot". ok is false when there is no usable snapshot; why is logged.
func (s *Store) Load(service string) (discovery.Set, bool) {
	set, _, ok := s.LoadSelected(service, "")
	return set, ok
}

// LoadSelected is Load for a set saved with SaveSelected: a snapshot saved for another
// selector is not returned. savedAt tells how old the data is.
func (s *Store) LoadSelected(service, selector string) (set discovery.Set, savedAt time.Time, ok bool) {
	return s.LoadSelectedIn(KindServices, service, selector)
}

// LoadSelectedIn is LoadSelected from directory kind (see SaveSelectedIn).
func (s *Store) LoadSelectedIn(kind, service, selector string) (set discovery.Set, savedAt time.Time, ok bool) {
	data, ok := s.LoadDoc(kind, service+".json")
	if !ok {
		return discovery.Set{}, time.Time{}, false
	}
	p := s.path(kind, service+".json")
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		s.log.Warn().Err(err).Str(fieldPath, p).Msg("ignoring corrupt snapshot")
		return discovery.Set{}, time.Time{}, false
	}
	if err := rec.check(service); err != nil {
		s.log.Warn().Err(err).Str(fieldPath, p).Msg("ignoring invalid snapshot")
		return discovery.Set{}, time.Time{}, false
	}
	if rec.Selector != selector {
		s.log.Info().Str(fieldPath, p).Str("saved_selector", rec.Selector).Str("selector", selector).
			Msg("ignoring snapshot taken for another selector")
		return discovery.Set{}, time.Time{}, false
	}
	eps := rec.Endpoints
	if eps == nil {
		eps = []discovery.Endpoint{}
	}
	return discovery.Set{Service: service, Endpoints: eps, Source: "snapshot", Protocol: rec.Protocol}, rec.SavedAt, true
}

func (r record) check(service string) error {
	if r.Version != formatVersion {
		return fmt.Errorf("format version %d, want %d", r.Version, formatVersion)
	}
	if r.Service != service {
		return fmt.Errorf("file holds service %q, want %q", r.Service, service)
	}
	for i, ep := range r.Endpoints {
		if ep.Address == "" || ep.Weight < 1 {
			return fmt.Errorf("endpoint %d: want an address and a weight >= 1, got %+v", i, ep)
		}
	}
	return nil
}

// SaveDoc stores data as DIR/kind/<escaped name>, atomically and durably. kind must be a plain
// directory name ("services", "kv"); name may be anything non-empty (it is escaped).
func (s *Store) SaveDoc(kind, name string, data []byte) error {
	if err := checkKind(kind); err != nil || name == "" {
		return fmt.Errorf("snapshot: kind %q name %q: %w", kind, name, ErrInvalidName)
	}
	dir := filepath.Join(s.dir, kind)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := writeAtomic(dir, Escape(name), data); err != nil {
		return fmt.Errorf("snapshot: save %s/%s: %w", kind, name, err)
	}
	return nil
}

// LoadDoc returns what SaveDoc stored. A missing file is silently "no snapshot"; an unreadable
// one is logged.
func (s *Store) LoadDoc(kind, name string) ([]byte, bool) {
	if checkKind(kind) != nil || name == "" {
		return nil, false
	}
	p := s.path(kind, name)
	data, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn().Err(err).Str(fieldPath, p).Msg("ignoring unreadable snapshot")
		}
		return nil, false
	}
	return data, true
}

func (s *Store) path(kind, name string) string {
	return filepath.Join(s.dir, kind, Escape(name))
}

func checkKind(kind string) error {
	if kind == "" || Escape(kind) != kind {
		return ErrInvalidName
	}
	return nil
}

// writeAtomic writes data to dir/name through a temp file in the same directory: write, fsync,
// rename, fsync the directory. Without the file fsync a crash can leave a renamed but empty
// file; without the directory fsync the rename itself may be lost.
func writeAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }() // opened read-only, for Sync alone
	// Some filesystems refuse fsync on directories; the rename already happened, so that is
	// not worth failing the save for.
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// Escape maps any string to one safe file name: letters, digits, '-' and '_' stay, '.' stays
// except in first position (no hidden files, no "." or ".."), every other byte becomes %XX.
// It is injective, so two names never share a file.
func Escape(name string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		plain := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' ||
			(c == '.' && i > 0)
		if plain {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}
