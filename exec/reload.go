package exec

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/frp"
)

// How a reload reaches a unit, beside systemctl's own verbs.
const (
	// verbFRPReload is frp's reload: GET /api/reload on frpc's admin API,
	// which re-reads the config and restarts only the proxies whose
	// definition changed, without logging in again. MoonFRP's units
	// reload with `kill -HUP $MAINPID`, which ends frpc: never used.
	verbFRPReload = "frp-reload"
	// verbNeedsRestart is a unit that frp cannot reload in place, left
	// running as it is and reported (see Result.NeedsRestart).
	verbNeedsRestart = "needs-restart"
	// verbRefused is a unit whose config frp's verify refused: it is
	// left as it is, and fails (see Config.Refused).
	verbRefused = "refused"
)

// classifyReload decides how a reload reaches u: units that do not run
// frp keep systemctl reload; an frpc with an admin API gets frp's own
// reload; frps and an frpc without one cannot be reloaded by frp, and
// get a restart with --restart-if-needed, else none (they are reported).
func classifyReload(cfg Config, u *unitRun, facts discover.Facts) {
	if facts.FRPBinary == "" {
		return // systemctl reload: ExecReload is the unit's business
	}
	need := ""
	switch {
	case u.tun == nil:
		need = "its config could not be read to reload it through frp (" + u.res.Tunnel.Fallback + ")"
	case u.tun.cfg.Kind == frp.Server:
		need = "frps has no reload of its own: only a restart applies its config"
	case u.tun.cfg.Admin == nil:
		need = "its config has no webServer (admin API), through which frp reloads"
	default:
		u.verb = verbFRPReload
		return
	}
	if cfg.RestartIfNeeded {
		u.verb = "restart"
		u.tun.fromTailOff()
		u.note("restarted, not reloaded: " + need)
		return
	}
	u.verb = verbNeedsRestart
	u.solely(StageReload, "needs a restart: "+need)
}

// fromTailOff makes a tunnel judged as a restarted one: from the log
// written after its operation began.
func (t *tunnelWatch) fromTailOff() {
	if t != nil {
		t.fromTail = false
	}
}

// frpReload carries out frp's reload of u through its admin API, once
// its main process is known to hold the API's socket. A change that frp's
// reload ignores (the server frpc is connected to is not the one its
// config names now) makes it a unit that needs a restart.
func frpReload(ctx context.Context, cfg Config, api *frp.API, u *unitRun, obs Observer) {
	u.markLogs()
	obs.Launched(u.res.Unit)
	u.res.Start = time.Now()
	u.res.OK = false
	defer func() {
		u.opEnd, u.opEndMono = time.Now(), monotonicMicros()
		u.res.OpDuration = u.opEnd.Sub(u.res.Start)
		obs.OpEnded(u.res.Unit, u.res.OK && !u.res.NeedsRestart)
	}()
	c := u.tun.cfg
	at, err := frp.Owned(ctx, c.Admin.Addr, c.Admin.Port, u.pidBefore)
	if err != nil {
		u.because(StageReload, fmt.Sprintf("frp's reload not sent: its admin API %s: %v", c.Admin, err))
		return
	}
	if why := serverMoved(ctx, api, c, at, u.pidBefore); why != "" {
		if cfg.RestartIfNeeded {
			restart := cfg
			restart.Operation = "restart"
			u.verb = "restart"
			u.tun.fromTailOff()
			u.markLogs() // judged from what the new process logs
			u.note("restarted, not reloaded: " + why)
			operateOne(ctx, restart, u)
			return
		}
		u.res.NeedsRestart = true
		u.solely(StageReload, "needs a restart: "+why)
		return
	}
	if err := api.Reload(ctx, *c.Admin, at); err != nil {
		u.because(StageReload, "frp refused the new config, and kept running the one it had: "+err.Error())
		return
	}
	u.res.OK = true
}

// serverMoved says why frp's reload cannot apply c, when frpc is logged
// in to another server than its config names now: frp's reload keeps the
// common section (server, auth, transport) as frpc read it at start. It
// can tell only for a direct TCP session, and only while logged in; a
// changed token or transport setting it cannot see.
func serverMoved(ctx context.Context, api *frp.API, c frp.Config, at netip.Addr, pid int) string {
	if !c.DirectTCP {
		return ""
	}
	st, err := api.Status(ctx, *c.Admin, at)
	if err != nil || !st.LoggedIn {
		return ""
	}
	addrs, err := frp.Addrs(ctx, c.ServerAddr)
	if err != nil {
		return ""
	}
	if to, err := frp.ConnectedTo(pid, addrs, c.ServerPort); err != nil || to {
		return ""
	}
	return fmt.Sprintf("its config names the server %s:%d now, but frpc is logged in elsewhere, and frp's reload keeps that session (serverAddr, serverPort, auth and transport apply at start only)",
		c.ServerAddr, c.ServerPort)
}
