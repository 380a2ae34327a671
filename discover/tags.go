package discover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// DefaultDataDir is MoonFRP's default MOONFRP_DATA_DIR.
const DefaultDataDir = "/opt/moonfrp/data"

// ErrNoIndex means the config index directory is missing or unreadable.
var ErrNoIndex = errors.New("config index not found")

// IndexEntry is one config's metadata from MoonFRP's config index.
type IndexEntry struct {
	Path string            `json:"path"`
	Type string            `json:"type"`
	Tags map[string]string `json:"tags"`
}

// Index is the parsed config index.
type Index struct {
	Entries  []IndexEntry
	Warnings []string
}

// LoadIndex reads every <dataDir>/config-index/*.json. Files that do not
// parse, or lack tags, are skipped with a warning; a missing directory is
// an error wrapping ErrNoIndex.
func LoadIndex(dataDir string) (Index, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	dir := filepath.Join(dataDir, "config-index")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Index{}, fmt.Errorf("%w at %s: build it with 'moonfrp index rebuild' or set MOONFRP_DATA_DIR", ErrNoIndex, dir)
		}
		return Index{}, fmt.Errorf("%w: %v", ErrNoIndex, err)
	}
	var idx Index
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			idx.Warnings = append(idx.Warnings, fmt.Sprintf("skipping config index file %s: %v", p, err))
			continue
		}
		var raw struct {
			Path string          `json:"path"`
			Type string          `json:"type"`
			Tags json.RawMessage `json:"tags"`
		}
		if err := json.Unmarshal(data, &raw); err != nil {
			idx.Warnings = append(idx.Warnings, fmt.Sprintf("skipping corrupt config index file %s: %v", p, err))
			continue
		}
		var tags map[string]any
		if len(raw.Tags) == 0 || json.Unmarshal(raw.Tags, &tags) != nil || raw.Path == "" {
			idx.Warnings = append(idx.Warnings, fmt.Sprintf("skipping config index file %s: no path or tags", p))
			continue
		}
		ent := IndexEntry{Path: raw.Path, Type: raw.Type, Tags: map[string]string{}}
		for k, v := range tags {
			ent.Tags[k] = fmt.Sprint(v)
		}
		idx.Entries = append(idx.Entries, ent)
	}
	sort.Slice(idx.Entries, func(i, j int) bool { return idx.Entries[i].Path < idx.Entries[j].Path })
	return idx, nil
}

// ConfigPaths returns the -c/--config argument of each command in an
// ExecStart property.
func ConfigPaths(execStart string) []string {
	var paths []string
	for _, argv := range systemctl.ExecArgv(execStart) {
		for i, a := range argv {
			switch {
			case (a == "-c" || a == "--config") && i+1 < len(argv):
				paths = append(paths, argv[i+1])
			case strings.HasPrefix(a, "--config="):
				paths = append(paths, strings.TrimPrefix(a, "--config="))
			}
		}
	}
	return paths
}

// UnitTags maps each unit to the tags of the config it runs, from the
// units' Facts. Only a config that no unit names falls back to the bash
// convention, moonfrp-<config file name without .toml>.
func UnitTags(units []Unit, facts map[string]Facts, idx Index) map[string]map[string]string {
	byConfig := map[string][]string{}
	for _, u := range units {
		for _, c := range facts[u.Name].Configs {
			byConfig[filepath.Clean(c)] = append(byConfig[filepath.Clean(c)], u.Name)
		}
	}
	known := map[string]bool{}
	for _, u := range units {
		known[u.Name] = true
	}
	tags := map[string]map[string]string{}
	for _, e := range idx.Entries {
		owners := byConfig[filepath.Clean(e.Path)]
		if len(owners) == 0 {
			guess := Prefix + strings.TrimSuffix(filepath.Base(e.Path), ".toml") + ".service"
			if known[guess] {
				owners = []string{guess}
			}
		}
		for _, o := range owners {
			if tags[o] == nil {
				tags[o] = map[string]string{}
			}
			for k, v := range e.Tags {
				tags[o][k] = v
			}
		}
	}
	return tags
}
