package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// tunnelRow is one real-frp measurement: n frpc tunnels (one proxy each)
// of frp version, restarted alone or together with their server.
type tunnelRow struct {
	n          int
	version    string
	withServer bool
}

// defaultTunnelRows are the real-frp rows of a full run: the three
// releases of the test matrix at 50 tunnels, and 200 tunnels on the
// newest, alone and with their server.
func defaultTunnelRows() []tunnelRow {
	var rows []tunnelRow
	for _, v := range sandbox.FRPVersions {
		rows = append(rows, tunnelRow{n: 50, version: v})
	}
	newest := sandbox.FRPVersions[len(sandbox.FRPVersions)-1]
	return append(rows, tunnelRow{n: 200, version: newest}, tunnelRow{n: 200, version: newest, withServer: true})
}

// parseTunnelRows reads N@VERSION rows, with a +server suffix for a
// restart that includes the server (200@v0.71.0+server).
func parseTunnelRows(spec string) ([]tunnelRow, error) {
	var rows []tunnelRow
	for _, r := range strings.Split(spec, ",") {
		r = strings.TrimSpace(r)
		server := strings.HasSuffix(r, "+server")
		ns, v, ok := strings.Cut(strings.TrimSuffix(r, "+server"), "@")
		n, err := strconv.Atoi(ns)
		if !ok || err != nil || n < 1 || !strings.HasPrefix(v, "v") {
			return nil, fmt.Errorf("bad tunnel row %q: want N@VERSION[+server], such as 200@v0.71.0+server", r)
		}
		rows = append(rows, tunnelRow{n: n, version: v, withServer: server})
	}
	return rows, nil
}

// apiLineRE matches the line frpc logs for each admin API request, in
// every release's wording ("Http request [/api/status]", "http request
// [/api/status]", "http request: [/api/status]").
var apiLineRE = regexp.MustCompile(`(?i)http request:? \[/api/`)

// measureTunnels restarts real frpc tunnels and measures the time until
// every tunnel is up and known to be up, three ways, taking turns round
// by round: moonfrp-bulk's verified restart (tunnels proven through
// frpc's admin API); what a careful user does today, xargs -P10 systemctl
// restart and then polling the frps dashboard until every tunnel is
// online; and moonfrp-bulk judging by systemd alone with a 1 s settle
// window. With the server, each method restarts it too: moonfrp-bulk in
// one run, the others first and alone. It also reports moonfrp-bulk's
// peak RSS, its admin API requests per tunnel, and any proxy that frps
// refused as "already exists" during a moonfrp-bulk run.
func measureTunnels(o options, bin string, row tunnelRow) ([]string, error) {
	n := row.n
	fmt.Fprintf(os.Stderr, "bench: %d real frpc tunnels, frp %s, server restarted too: %v\n", n, row.version, row.withServer)
	ctx := context.Background()
	sb, err := sandbox.Start(ctx)
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	bctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	sc, err := sandbox.NewFRPScene(bctx, sb, n, row.version)
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
	units := clients
	first := ""
	if row.withServer {
		units = append([]string{"moonfrp-server"}, clients...)
		// The server first, and accepting, as MoonFRP's serial code and
		// a careful operator do.
		first = fmt.Sprintf("systemctl --user restart moonfrp-server && until (exec 3<>/dev/tcp/127.0.0.1/%d) 2>/dev/null; do sleep 0.02; done && ", sc.Bind)
	}
	methods := []struct {
		name string
		cmd  string
		args []string
	}{
		{"moonfrp-bulk -j10 (tunnels proven)", own, append([]string{"restart", "-j", "10"}, units...)},
		{"xargs -P10, then poll the dashboard", "bash", []string{"-c", "t0=$(date '+%m-%d %H:%M:%S'); " + first + "printf '%s\\n' " + list + " | xargs -P10 -n1 systemctl --user restart && " + poll}},
		{"moonfrp-bulk -j10 --no-tunnel-check (1s settle)", own, append([]string{"restart", "-j", "10", "--no-tunnel-check"}, units...)},
		{"moonfrp-bulk -j10 --no-preflight", own, append([]string{"restart", "-j", "10", "--no-preflight"}, units...)},
	}
	walls := make([][]time.Duration, len(methods))
	var rss []int64
	var requests []float64
	exists := 0
	runs := o.runs
	if o.quick {
		runs = 1
	}
	for r := 0; r < runs; r++ {
		for i, m := range methods {
			before := apiRequests(sb.LogDir)
			frpsBefore := fileSize(filepath.Join(sb.LogDir, "frps.log"))
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
			if i == 0 {
				rss = append(rss, s.maxRSS)
				requests = append(requests, float64(apiRequests(sb.LogDir)-before)/float64(n))
				exists += strings.Count(readFrom(filepath.Join(sb.LogDir, "frps.log"), frpsBefore), "already exists")
			}
		}
	}
	med := func(i int) time.Duration { return medianOf(walls[i]) }
	what := "the server up"
	if row.withServer {
		what = "restarted with the server"
	}
	maxRSS := int64(0)
	for _, v := range rss {
		maxRSS = max(maxRSS, v)
	}
	maxReq := 0.0
	for _, v := range requests {
		maxReq = max(maxReq, v)
	}
	note := fmt.Sprintf("%d real frpc tunnels (frp %s, one proxy each, %s), restart until every tunnel is up and known to be up, median of %d: "+
		"%s %.2fs; %s %.2fs (moonfrp-bulk %.2f× it); %s %.2fs (moonfrp-bulk %.2f× it). moonfrp-bulk's peak RSS %.1f MiB, "+
		"at most %.1f admin API requests per tunnel, %d proxies refused as \"already exists\"; without the preflight (frp's verify of each config) %.2fs (with it %.2f× that). "+
		"Targets: moonfrp-bulk ≤ 1.05× xargs and the dashboard, no slower than its 1 s settle window, the preflight ≤ 1.10×.",
		n, row.version, what, runs, methods[0].name, med(0).Seconds(), methods[1].name, med(1).Seconds(), med(0).Seconds()/med(1).Seconds(),
		methods[2].name, med(2).Seconds(), med(0).Seconds()/med(2).Seconds(), float64(maxRSS)/1024, maxReq, exists,
		med(3).Seconds(), med(0).Seconds()/med(3).Seconds())
	fmt.Println("note:", note)
	return []string{note}, nil
}

// apiRequests counts the admin API requests that frpc logged, in every
// log of dir.
func apiRequests(dir string) int {
	logs, _ := filepath.Glob(filepath.Join(dir, "frpc-*.log"))
	total := 0
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err == nil {
			total += len(apiLineRE.FindAllIndex(data, -1))
		}
	}
	return total
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readFrom returns what the file at path holds from offset on.
func readFrom(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return ""
	}
	return string(data[offset:])
}
