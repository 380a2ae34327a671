package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// measureHost restarts a server and n clients on a booted Debian host,
// as MoonFRP lays them out (its hardened units, root, the system
// manager, frp's default release), until every tunnel is up and known to
// be up, two ways, taking turns: moonfrp-bulk restart; and the server,
// then xargs -P10 on the clients, then polling the frps dashboard every
// 0.1 s until all are online. From moonfrp-bulk's JSON it also reports
// where the time goes: the server's proof before any client goes, and
// each client's proof after its systemctl call.
func measureHost(o options, bin string, n int) ([]string, error) {
	fmt.Fprintf(os.Stderr, "bench: a booted host with a server and %d clients\n", n)
	ctx := context.Background()
	h, err := sandbox.BootHost(ctx)
	if err != nil {
		return nil, err
	}
	defer h.Stop()
	frpDir, err := sandbox.FRP(ctx)
	if err != nil {
		return nil, err
	}
	_, self, _, _ := runtime.Caller(0)
	shim := filepath.Join(filepath.Dir(self), "..", "..", "bash", "moonfrp-bulk.sh")
	ht, err := sandbox.NewHostTunnels(ctx, h, sandbox.HostTunnelOpts{FRP: frpDir, Bin: bin, Shim: shim, Clients: n})
	if err != nil {
		return nil, err
	}
	if out, err := h.Run(ctx, "moonfrp-bulk", "start"); err != nil {
		return nil, fmt.Errorf("first start: %w: %s", err, out)
	}
	clients := strings.Join(ht.Names[1:], " ")
	poll := fmt.Sprintf(`until [ "$(curl -s -u admin:%s http://127.0.0.1:%d/api/proxy/tcp | jq --arg t0 "$t0" '[.proxies[] | select(.status=="online" and .lastStartTime >= $t0)] | length')" -ge %d ]; do sleep 0.1; done`,
		sandbox.DashPassword, ht.Dash, n)
	alt := "t0=$(date '+%m-%d %H:%M:%S'); systemctl restart moonfrp-server && " +
		fmt.Sprintf("until (exec 3<>/dev/tcp/127.0.0.1/%d) 2>/dev/null; do sleep 0.02; done && ", ht.Bind) +
		"printf '%s\\n' " + clients + " | xargs -P10 -n1 systemctl restart && " + poll
	runs := o.runs
	if o.quick {
		runs = 1
	}
	var bulk, xargs []time.Duration
	var serverProof, clientProof []time.Duration
	for r := 0; r < runs; r++ {
		start := time.Now()
		cmd := h.Command(ctx, "moonfrp-bulk", "restart", "-o", "json")
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("moonfrp-bulk restart in the host: %w", err)
		}
		bulk = append(bulk, time.Since(start))
		sp, cp := proofs(string(out))
		serverProof = append(serverProof, sp)
		clientProof = append(clientProof, cp...)
		start = time.Now()
		if out, err := h.Run(ctx, "bash", "-c", alt); err != nil {
			return nil, fmt.Errorf("the alternative in the host: %w: %s", err, out)
		}
		xargs = append(xargs, time.Since(start))
	}
	sort.Slice(clientProof, func(i, j int) bool { return clientProof[i] < clientProof[j] })
	note := fmt.Sprintf("A booted Debian host (the system manager, MoonFRP's hardened units, frp %s), a server and %d clients, "+
		"restart until every tunnel is up and known to be up, median of %d: moonfrp-bulk restart %.2fs; the server, then xargs -P10 "+
		"on the clients, then polling the frps dashboard every 0.1 s, %.2fs (moonfrp-bulk %.2f× it). Where moonfrp-bulk's time goes: "+
		"the server proven %.0f ms after its launch (median), a client proven %.0f ms after its systemctl call (median; 90th percentile %.0f ms). "+
		"Target: ≤ 1.05×.", sandbox.FRPDefault, n, runs, medianOf(bulk).Seconds(), medianOf(xargs).Seconds(),
		medianOf(bulk).Seconds()/medianOf(xargs).Seconds(), ms(medianOf(serverProof)), ms(medianOf(clientProof)),
		ms(clientProof[len(clientProof)*9/10]))
	fmt.Println("note:", note)
	return []string{note}, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// proofs reads a run's JSON results: the server's time from launch to
// verdict, and each client's from the end of its systemctl call to its
// verdict.
func proofs(stdout string) (server time.Duration, clients []time.Duration) {
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			Event      string `json:"event"`
			Unit       string `json:"unit"`
			DurationMS int64  `json:"duration_ms"`
			OpMS       int64  `json:"op_duration_ms"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Event != "result" {
			continue
		}
		if ev.Unit == "moonfrp-server.service" {
			server = time.Duration(ev.DurationMS) * time.Millisecond
		} else {
			clients = append(clients, time.Duration(ev.DurationMS-ev.OpMS)*time.Millisecond)
		}
	}
	return server, clients
}
