package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// measureTunnels restarts n real frpc tunnels (the server stays up) and
// measures the time until every tunnel is up and known to be up, three
// ways, taking turns round by round: moonfrp-bulk's verified restart
// (tunnels proven through frpc's admin API); what a careful user does
// today, xargs -P10 systemctl restart and then polling the frps dashboard
// until every tunnel is online; and moonfrp-bulk judging by systemd alone
// with a 1 s settle window (how it verified before tunnels were proven).
func measureTunnels(o options, bin string, n int) ([]string, error) {
	fmt.Fprintf(os.Stderr, "bench: %d real frpc tunnels\n", n)
	ctx := context.Background()
	sb, err := sandbox.Start(ctx)
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	bctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	sc, err := sandbox.NewFRPScene(bctx, sb, n, "")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("real frp: %w", err)
	}
	if err := sc.Server(""); err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		if err := sc.Client(fmt.Sprint(i), sandbox.ClientOpts{}); err != nil {
			return nil, err
		}
	}
	for i := range sc.Specs {
		sc.Specs[i].NoStartLimit = true
	}
	if err := sc.Install(ctx); err != nil {
		return nil, err
	}
	own := filepath.Join(sb.BinDir(), "moonfrp-bulk")
	if err := copyFile(bin, own); err != nil {
		return nil, err
	}
	b := &bench{o: o, sb: sb, bin: own}
	if _, err := b.time(own, "start", "-j", "10"); err != nil {
		return nil, fmt.Errorf("first start of the tunnels: %w", err)
	}
	var clients []string
	for _, name := range sandbox.Names(sc.Specs) {
		if name != "moonfrp-server" {
			clients = append(clients, name)
		}
	}
	list := strings.Join(clients, " ")
	// Online, and since the restart began: right after a restart frps may
	// still list a proxy's old session as online (lastStartTime has a
	// resolution of one second, so this is if anything generous to it).
	poll := fmt.Sprintf(`until [ "$(curl -s -u admin:%s http://127.0.0.1:%d/api/proxy/tcp | jq --arg t0 "$t0" '[.proxies[] | select(.status=="online" and .lastStartTime >= $t0)] | length')" -ge %d ]; do sleep 0.05; done`,
		sandbox.DashPassword, sc.Dash, n)
	methods := []struct {
		name string
		cmd  string
		args []string
	}{
		{"moonfrp-bulk -j10 (tunnels proven)", own, append([]string{"restart", "-j", "10"}, clients...)},
		{"xargs -P10, then poll the dashboard", "bash", []string{"-c", "t0=$(date '+%m-%d %H:%M:%S'); printf '%s\\n' " + list + " | xargs -P10 -n1 systemctl --user restart && " + poll}},
		{"moonfrp-bulk -j10 --no-tunnel-check (1s settle)", own, append([]string{"restart", "-j", "10", "--no-tunnel-check"}, clients...)},
	}
	walls := make([][]time.Duration, len(methods))
	runs := o.runs
	if o.quick {
		runs = 1
	}
	for r := 0; r < runs; r++ {
		for i, m := range methods {
			s, err := b.time(m.cmd, m.args...)
			if err != nil {
				return nil, err
			}
			// Every method must leave every tunnel online.
			on, err := sc.Online(ctx)
			if err != nil || len(on) != n {
				return nil, fmt.Errorf("%s left %d of %d tunnels online (%v)", m.name, len(on), n, err)
			}
			walls[i] = append(walls[i], s.wall)
		}
	}
	med := func(i int) time.Duration { return medianOf(walls[i]) }
	note := fmt.Sprintf("%d real frpc tunnels (frp "+sc.Version+", one proxy each, the server up), restart until every tunnel is up and known to be up, median of %d: "+
		"%s %.2fs; %s %.2fs (%.2f× moonfrp-bulk); %s %.2fs (%.2f×). Target: moonfrp-bulk's verified restart no slower than its restart with the 1 s settle window.",
		n, runs, methods[0].name, med(0).Seconds(), methods[1].name, med(1).Seconds(), med(1).Seconds()/med(0).Seconds(),
		methods[2].name, med(2).Seconds(), med(2).Seconds()/med(0).Seconds())
	fmt.Println("note:", note)
	return []string{note}, nil
}
