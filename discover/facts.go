package discover

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/safefile"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// Facts are what a unit's definition says about the tunnel it runs.
type Facts struct {
	// Configs are the -c/--config arguments of its ExecStart commands.
	Configs []string
	// FRPBinary ("frpc" or "frps") and FRPConfig are set when ExecStart
	// runs frp with a config; FRPPath is the binary as ExecStart names it.
	FRPBinary, FRPConfig, FRPPath string
	// WorkDir is the unit's WorkingDirectory= when it is an absolute
	// path: frp resolves a relative config path, log.to and includes
	// against it. "" when unset (or "~"): such paths are then refused.
	WorkDir string
	// User is the unit's User=, whose files are read as well as root's.
	User string
	// MainPID is the unit's main process, 0 when it has none; Started
	// is when it started (systemd's stamp), zero when unknown.
	MainPID int
	Started time.Time
	// LoadState is systemd's: "not-found" for a name it does not know.
	LoadState string
	// Pre is the unit's state as the same show read it (preProps), so
	// that a run needs no second show of every unit before it begins;
	// nil when it was not read.
	Pre systemctl.Properties
}

// PreProps are the properties a run needs of each unit before its
// operation (exec's prepare): read with the facts, kept in Facts.Pre.
// The stamps of its last stop and start say how long it took then.
const PreProps = "Id,LoadState,ActiveState,FragmentPath,DropInPaths," +
	"ActiveExitTimestampMonotonic,InactiveEnterTimestampMonotonic,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic"

// factProps are what ReadFacts asks for: the facts, and PreProps.
const factProps = "ExecStart,WorkingDirectory,User,MainPID,ExecMainStartTimestampMonotonic," + PreProps

// Owners returns whose files may be read for the unit: root's and its
// User='s.
func (f Facts) Owners() safefile.Options { return safefile.ForUser(f.User) }

// FactsFromProps reads Facts from a unit's properties: ExecStart, User,
// MainPID, LoadState, and Pre when they include ActiveState.
func FactsFromProps(p systemctl.Properties) Facts {
	pid, _ := strconv.Atoi(p["MainPID"])
	f := Facts{Configs: ConfigPaths(p["ExecStart"]), User: p["User"], MainPID: pid, LoadState: p["LoadState"]}
	if mono, err := strconv.ParseUint(p["ExecMainStartTimestampMonotonic"], 10, 64); err == nil && mono > 0 {
		f.Started = wallClock(mono)
	}
	if wd := strings.TrimLeft(p["WorkingDirectory"], "-!"); filepath.IsAbs(wd) {
		// systemd writes "!" and "-" before the path for its flags.
		f.WorkDir = filepath.Clean(wd)
	}
	if _, ok := p["ActiveState"]; ok {
		f.Pre = systemctl.Properties{}
		for _, k := range strings.Split(PreProps, ",") {
			f.Pre[k] = p[k]
		}
	}
	for _, argv := range systemctl.ExecArgv(p["ExecStart"]) {
		if bin, cfg, ok := frp.Binary(argv); ok {
			f.FRPBinary, f.FRPConfig, f.FRPPath = bin, cfg, argv[0]
			break
		}
	}
	return f
}

// wallClock turns a stamp on systemd's clock (µs of CLOCK_MONOTONIC, as
// systemd stamps a process's start) into wall-clock time.
func wallClock(mono uint64) time.Time {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return time.Time{}
	}
	now := uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
	return time.Now().Add(-time.Duration(now-mono) * time.Microsecond)
}

// ReadFacts reads every unit's Facts, and its state before a run (Pre),
// with one batched `systemctl show`.
func ReadFacts(ctx context.Context, r systemctl.Runner, units []Unit) (map[string]Facts, error) {
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.Name
	}
	props, err := systemctl.Show(ctx, r, factProps, names)
	if err != nil {
		return nil, fmt.Errorf("read units: %w", err)
	}
	facts := make(map[string]Facts, len(units))
	for i, n := range names {
		facts[n] = FactsFromProps(props[i])
	}
	return facts, nil
}

// TunnelInfo is a tunnel's state as `list` and tunnel: filters see it.
type TunnelInfo struct {
	State frp.State
	// Why says what is wrong when the tunnel is not online.
	Why string
	// Note says what was left unchecked (see frp.Verdict).
	Note string
}

// maxObserves bounds concurrent looks at tunnels (admin API requests).
const maxObserves = 16

// Tunnels looks once at the tunnel of every frp unit: inactive units are
// down, running ones are asked (see frp.Observe), and units that do not
// run frp are not-frp.
func Tunnels(ctx context.Context, units []Unit, facts map[string]Facts, api *frp.API) map[string]TunnelInfo {
	out := make(map[string]TunnelInfo, len(units))
	var mu sync.Mutex // out is written by the looks as well
	set := func(name string, t TunnelInfo) {
		mu.Lock()
		out[name] = t
		mu.Unlock()
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxObserves)
	for _, u := range units {
		f := facts[u.Name]
		if f.FRPBinary == "" {
			set(u.Name, TunnelInfo{State: frp.NotFRP})
			continue
		}
		cfg, err := frp.Load(f.FRPConfig, f.FRPBinary, f.Owners(), f.WorkDir)
		if err != nil {
			set(u.Name, TunnelInfo{State: frp.Unchecked, Why: err.Error()})
			continue
		}
		if u.Active != "active" && u.Active != "reloading" {
			set(u.Name, TunnelInfo{State: frp.Down, Why: "unit is " + u.Active + " (" + u.Sub + ")"})
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(name string) {
			defer wg.Done()
			defer func() { <-sem }()
			v := frp.Observe(ctx, api, cfg, f.Owners(), f.MainPID)
			set(name, TunnelInfo{State: v.State, Why: v.Why, Note: v.Note})
		}(u.Name)
	}
	wg.Wait()
	return out
}
