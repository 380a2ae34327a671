package exec

import (
	"bytes"
	"context"
	"errors"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/safefile"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
)

// Tunnel is what frp-level verification found for an frp unit.
type Tunnel struct {
	Kind   frp.Kind
	Config string // the config's path
	// Check is how the tunnel was judged: "admin API", "log", "port", or
	// "systemd" after a fallback.
	Check string
	State frp.State
	// Fallback says why the unit was checked at systemd level only.
	Fallback string
	// Note says what a verdict left unchecked, or a file that was
	// refused (see frp.Verdict's Note).
	Note    string
	Proxies []frp.ProxyStatus
}

// maxLogChunk bounds one read of an frp log between two looks.
const maxLogChunk = 256 << 10

// tunnelWatch is one frp unit's verification state while it is proven
// (Tunnel is what the proof found, for its Result).
type tunnelWatch struct {
	cfg    frp.Config
	probe  frp.Probe
	opt    safefile.Options
	offset int64 // of frp's log.to, where the operation began
	rest   []byte
	log    frp.LogState
	lines  []string // the last maxTailLines lines, for the result's log tail
	// adminOff is set once the admin API refused to be useful (bad
	// credentials, not frp, a port held by another process): the log
	// decides from then on.
	adminOff bool
	// last is the newest look's verdict.
	last frp.Verdict
	// logNote names log.to when it exists and was refused.
	logNote string
	// fromTail makes mark start at the log's tail instead of its end:
	// for a start or reload of a unit that was already running, whose
	// process (and so its login lines) predates the operation.
	fromTail bool
}

// maxPriorLog bounds the log read from before the operation (fromTail).
const maxPriorLog = 64 << 10

// mark records where frp's log ends as the operation begins.
func (t *tunnelWatch) mark() {
	t.rest, t.log, t.last, t.lines, t.logNote = nil, frp.LogState{}, frp.Verdict{}, nil, ""
	if t.cfg.LogTo != "" {
		t.offset = safefile.Size(t.cfg.LogTo, t.cfg.LogOptions(t.opt))
		if t.fromTail && t.offset > 0 {
			t.offset = max(0, t.offset-maxPriorLog)
			t.readLog()
			t.lines = nil    // what came before the operation is no reason
			t.log.Logins = 0 // nor a login
		}
	}
}

// readLog feeds the frp log lines written since the last look to the
// log state. It reads whole lines only, at most maxLogChunk at a time.
func (t *tunnelWatch) readLog() {
	if t.cfg.LogTo == "" {
		return
	}
	f, err := safefile.Open(t.cfg.LogTo, t.cfg.LogOptions(t.opt))
	if err != nil {
		if errors.Is(err, safefile.ErrRefused) {
			t.logNote = "frp's log.to not read: " + sanitize.Line(err.Error())
		}
		return
	}
	defer f.Close()
	t.logNote = ""
	if t.offset < 0 || f.Size < t.offset {
		t.offset, t.rest = 0, nil // created, or truncated, since
	}
	if f.Size-t.offset > maxLogChunk {
		t.rest = nil // text is skipped: a partial line would splice
	}
	data, err := f.ReadFrom(t.offset, maxLogChunk)
	if err != nil {
		return
	}
	t.offset = f.Size
	data = append(t.rest, data...)
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		t.rest = data
		return
	}
	t.rest = append([]byte(nil), data[end+1:]...)
	defer func() {
		if len(t.lines) > maxTailLines {
			t.lines = append([]string(nil), t.lines[len(t.lines)-maxTailLines:]...)
		}
	}()
	for _, l := range strings.Split(string(data[:end]), "\n") {
		if l = strings.TrimSpace(sanitize.Line(l)); l != "" {
			t.log.Add(l)
			if !frp.IsAPINoise(l) {
				t.lines = append(t.lines, l)
			}
		}
	}
}

// look checks once whether the tunnel is up, with the probe of its kind
// (see frp.Probe) and what the log said since the operation began.
func (t *tunnelWatch) look(ctx context.Context, api *frp.API, mainPID int) frp.Verdict {
	t.readLog()
	v := t.probe.Look(ctx, frp.Input{API: api, PID: mainPID, Log: t.log, LogIsAll: t.fromTail, NoAdmin: t.adminOff})
	if v.AdminUseless && t.cfg.LogTo != "" {
		t.adminOff = true
	}
	v.Note = joinNote(v.Note, t.logNote)
	t.last = v
	return v
}

func joinNote(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// loadTunnel reads an frp unit's config. A config that cannot be used is
// not an error for the run: the unit is checked at systemd level, and the
// result says why.
func loadTunnel(binary, path, dir string, opt safefile.Options) (*tunnelWatch, *Tunnel) {
	cfg, err := frp.Load(path, binary, opt, dir)
	info := &Tunnel{Config: path, Check: "systemd", State: frp.Unchecked}
	if err != nil {
		switch {
		case errors.Is(err, frp.ErrLegacy), errors.Is(err, frp.ErrTemplate):
			info.Fallback = err.Error()
		default:
			info.Fallback = sanitize.Line(err.Error()) + "; checked at systemd level"
		}
		return nil, info
	}
	info.Kind, info.Config = cfg.Kind, cfg.Path
	if cfg.Kind != frp.Server && (cfg.Admin == nil || cfg.Kind == frp.Visitor) && cfg.LogTo == "" {
		info.Fallback = "no webServer and no log.to file to prove the tunnel; checked at systemd level"
		return nil, info
	}
	return &tunnelWatch{cfg: cfg, probe: cfg.Probe(), opt: opt}, info
}
