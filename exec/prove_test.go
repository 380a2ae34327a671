package exec

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// refusingProbe always says what frp said once: a proxy refused, asked
// again only after frp.ProxyRetry.
type refusingProbe struct{}

func (refusingProbe) Look(context.Context, frp.Input) frp.Verdict {
	return frp.Verdict{State: frp.ProxyError, Why: "proxy p1 start error: port already used", Check: frp.CheckAdmin,
		Refused: true, Retry: frp.ProxyRetry}
}

// proveRefused proves one unit whose tunnel frp refuses, with the given
// deadline, in fake time, and returns its reason and how long the proof
// took.
func proveRefused(t *testing.T, deadline time.Duration) (string, time.Duration) {
	var what string
	var took time.Duration
	synctest.Test(t, func(t *testing.T) {
		units := map[string]*fakeUnit{"moonfrp-client-1.service": {state: systemctl.Properties{"ActiveState": "active", "SubState": "running", "MainPID": "4242"}}}
		cfg := Config{Settings: Settings{Operation: "restart", Verify: true, TunnelDeadline: deadline}, Runner: newFake(units)}
		done := make(chan struct{})
		v := newVerifier(context.Background(), cfg, frp.NewAPI(), func(*unitRun) { close(done) })
		admin := frp.Endpoint{Addr: "127.0.0.1", Port: 1}
		u := &unitRun{res: Result{Unit: "moonfrp-client-1.service", OK: true, Tunnel: &Tunnel{}}, done: make(chan struct{}),
			tun: &tunnelWatch{cfg: frp.Config{Kind: frp.Client, Admin: &admin, Proxies: []string{"p1"}}, probe: refusingProbe{}}}
		start := time.Now()
		u.opEnd = start
		v.add(u)
		v.close()
		<-done
		v.wait()
		what, took = u.why.text, time.Since(start)
	})
	return what, took
}

// A refusal that frp retries only after the deadline fails at once; one
// that frp retries before the deadline (a deadline longer than
// frp.ProxyRetry) is waited for, since the retry may succeed.
func TestProveFailsARefusalOnlyWhenFrpCannotRetryInTime(t *testing.T) {
	what, took := proveRefused(t, 10*time.Second)
	if !strings.HasPrefix(what, "frp refused the tunnel: proxy p1 start error: port already used") || took > time.Second {
		t.Errorf("deadline 10s: %q after %s; want frp's refusal at once", what, took)
	}
	what, took = proveRefused(t, 45*time.Second)
	if !strings.HasPrefix(what, "tunnel not up within 45s") || took < 45*time.Second {
		t.Errorf("deadline 45s: %q after %s; want a wait for frp's retry, to the deadline", what, took)
	}
}
