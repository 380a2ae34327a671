package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	Proxies  []frp.ProxyStatus
}

// maxLogChunk bounds one read of an frp log between two looks.
const maxLogChunk = 256 << 10

// tunnel is one frp unit's verification state.
type tunnel struct {
	cfg    frp.Config
	opt    safefile.Options
	offset int64 // of frp's log.to, where the operation began
	rest   []byte
	log    frp.LogState
	lines  []string // the last maxTailLines lines, for the result's log tail
	// adminOff is set once the admin API refused to be useful (bad
	// credentials, not frp, a port held by another process): the log
	// decides from then on.
	adminOff bool
	status   *frp.Status
	// fromTail makes mark start at the log's tail instead of its end:
	// for a start or reload of a unit that was already running, whose
	// process (and so its login lines) predates the operation.
	fromTail bool
}

// maxPriorLog bounds the log read from before the operation (fromTail).
const maxPriorLog = 64 << 10

// mark records where frp's log ends as the operation begins.
func (t *tunnel) mark() {
	t.rest, t.log, t.status, t.lines = nil, frp.LogState{}, nil, nil
	if t.cfg.LogTo != "" {
		t.offset = safefile.Size(t.cfg.LogTo, t.cfg.LogOptions(t.opt))
		if t.fromTail && t.offset > 0 {
			t.offset = max(0, t.offset-maxPriorLog)
			t.readLog()
			t.lines = nil // what came before the operation is no reason
		}
	}
}

// readLog feeds the frp log lines written since the last look to the
// log state. It reads whole lines only, at most maxLogChunk at a time.
func (t *tunnel) readLog() {
	if t.cfg.LogTo == "" {
		return
	}
	f, err := safefile.Open(t.cfg.LogTo, t.cfg.LogOptions(t.opt))
	if err != nil {
		return
	}
	defer f.Close()
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

// look checks once whether the tunnel is up. It returns "" when it is,
// else what is missing, for the reason at the deadline.
//
// A server must accept connections on its bindPort, on a socket that its
// own main process holds (mainPID), so that another program that happens
// to listen there cannot pass for it. Where the process's descriptors
// cannot be read, accepting is enough.
func (t *tunnel) look(ctx context.Context, api *frp.API, check *string, mainPID int) string {
	t.readLog()
	switch {
	case t.cfg.Kind == frp.Server:
		*check = "port"
		if err := frp.Accepts(ctx, t.cfg.BindAddr, t.cfg.BindPort); err != nil {
			return err.Error()
		}
		if mainPID > 0 {
			if own, err := frp.ListenerOf(mainPID, t.cfg.BindPort); err == nil && !own {
				return fmt.Sprintf("port %d accepts, but not on a socket of frps (pid %d)", t.cfg.BindPort, mainPID)
			}
		}
		return ""
	case t.cfg.Admin != nil && t.cfg.Kind != frp.Visitor && !t.adminOff:
		// frpc's /api/status lists proxies only: a visitor-only config
		// is judged from its log.
		*check = "admin API"
		if !t.cfg.AdminHeldBy(mainPID) {
			// Not frpc's socket: the credentials are not sent there.
			if t.cfg.LogTo != "" {
				t.adminOff = true
			}
			return fmt.Sprintf("admin port %d is not held by frpc (pid %d); not asking it", t.cfg.Admin.Port, mainPID)
		}
		st, err := api.Status(ctx, *t.cfg.Admin)
		if err != nil {
			if t.cfg.LogTo != "" && (strings.Contains(err.Error(), "(401)") || strings.Contains(err.Error(), "not frp's JSON")) {
				t.adminOff = true
			}
			return err.Error()
		}
		t.status = &st
		return t.cfg.Up(st)
	default:
		*check = "log"
		return t.log.Up(t.cfg)
	}
}

// state names where the tunnel stands after its last look.
func (t *tunnel) state(up bool) frp.State { return frp.Judge(t.cfg, up, t.status, t.log) }

// why picks the most telling reason for a tunnel that is not up: frp's
// own newest error line since the operation began, then the admin API's
// proxy error, then what the last look missed.
func (t *tunnel) why(missing string) string {
	if t.log.LastError != "" {
		return t.log.LastError
	}
	if t.status != nil {
		for _, p := range t.status.Proxies {
			if p.Err != "" {
				return "proxy " + p.Name + " " + p.Status + ": " + p.Err
			}
		}
	}
	return missing
}

// loadTunnel reads an frp unit's config. A config that cannot be used is
// not an error for the run: the unit is checked at systemd level, and the
// result says why.
func loadTunnel(binary, path string, opt safefile.Options) (*tunnel, *Tunnel) {
	cfg, err := frp.Load(path, binary, opt)
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
	info.Kind = cfg.Kind
	if cfg.Kind != frp.Server && (cfg.Admin == nil || cfg.Kind == frp.Visitor) && cfg.LogTo == "" {
		info.Fallback = "no webServer and no log.to file to prove the tunnel; checked at systemd level"
		return nil, info
	}
	return &tunnel{cfg: cfg, opt: opt}, info
}
