package frp

import (
	"context"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/safefile"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
)

// maxObserveTail bounds the log read by Observe.
const maxObserveTail = 64 << 10

// Observe looks once at the tunnel of a running frp unit that nobody has
// just started (for `list` and tunnel: filters): the probe of its kind,
// with the tail of its log as all there is about its login. A log that
// is refused is named in the verdict's note.
func Observe(ctx context.Context, api *API, c Config, opt safefile.Options, mainPID int) Verdict {
	in := Input{API: api, PID: mainPID, LogIsAll: true}
	note := ""
	if c.LogTo != "" {
		lines, err := Tail(c.LogTo, c.LogOptions(opt), maxObserveTail)
		if err != nil {
			note = "log.to not read: " + sanitize.Line(err.Error())
		}
		for _, l := range lines {
			in.Log.Add(l)
		}
	}
	v := c.Probe().Look(ctx, in)
	v.Note = joinNotes(v.Note, note)
	return v
}

// Tail returns the sanitised, non-empty lines of the last max bytes of
// the file at path (the first one may be partial).
func Tail(path string, opt safefile.Options, max int64) ([]string, error) {
	f, err := safefile.Open(path, opt)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := f.ReadFrom(f.Size-max, max)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(sanitize.Line(l)); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// LogOptions says whose files may be read as the config's log.to: those
// the unit may read, but when the config belongs to a user other than
// root, only that user's, so that a config cannot make root read root's
// files.
func (c Config) LogOptions(unit safefile.Options) safefile.Options {
	if c.Owner != 0 {
		return safefile.Options{Owners: []int{c.Owner}, NotRoot: true}
	}
	return unit
}
