package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// measureReload changes one proxy of each of n real frpc tunnels (its
// remotePort, back and forth) and applies the change two ways, taking
// turns: moonfrp-bulk reload (frp's own reload, in place) and
// moonfrp-bulk restart. Each tunnel has a second, unchanged proxy with an
// open connection through it to an echo server; the note counts how many
// of those connections each way dropped, and the wall times.
func measureReload(o options, bin string, n int) ([]string, error) {
	fmt.Fprintf(os.Stderr, "bench: reload against restart of %d real frpc tunnels\n", n)
	ctx := context.Background()
	sb, err := sandbox.Start(ctx)
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	sc, err := sandbox.NewFRPScene(ctx, sb, 2*n, "")
	if err != nil {
		return nil, err
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	if err := sc.Server(""); err != nil {
		return nil, err
	}
	moving := make([][2]int, n)
	for i := 1; i <= n; i++ {
		if err := sc.Client(fmt.Sprint(i), sandbox.ClientOpts{LocalPort: echo.Addr().(*net.TCPAddr).Port}); err != nil {
			return nil, err
		}
		a, err1 := sc.Port()
		b, err2 := sc.Port()
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("ports: %v %v", err1, err2)
		}
		moving[i-1] = [2]int{a, b}
		p := sc.ConfigPath(fmt.Sprintf("moonfrp-client-%d", i))
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		data = append(data, []byte(fmt.Sprintf("\n[[proxies]]\nname = \"moving\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = 9\nremotePort = %d\n", a))...)
		if err := os.WriteFile(p, data, 0o600); err != nil {
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
	if _, err := b.time(own, "start"); err != nil {
		return nil, err
	}
	var clients []string
	for i := 1; i <= n; i++ {
		clients = append(clients, fmt.Sprintf("moonfrp-client-%d", i))
	}
	flip := 0
	move := func() error {
		flip = 1 - flip
		for i, u := range clients {
			p := sc.ConfigPath(u)
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := strings.Replace(string(data), fmt.Sprintf("remotePort = %d\n", moving[i][1-flip]), fmt.Sprintf("remotePort = %d\n", moving[i][flip]), 1)
			if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
				return err
			}
		}
		return nil
	}
	methods := []struct {
		name string
		op   string
	}{{"moonfrp-bulk reload (frp's own, in place)", "reload"}, {"moonfrp-bulk restart", "restart"}}
	runs := o.runs
	if o.quick {
		runs = 1
	}
	walls := make([][]time.Duration, len(methods))
	dropped := make([]int, len(methods))
	for r := 0; r < runs; r++ {
		for i, m := range methods {
			conns, err := openThrough(sc, clients)
			if err != nil {
				return nil, err
			}
			if err := move(); err != nil {
				return nil, err
			}
			s, err := b.time(own, append([]string{m.op, "-j", "10"}, clients...)...)
			if err != nil {
				return nil, err
			}
			walls[i] = append(walls[i], s.wall)
			for _, c := range conns {
				if !c.alive() {
					dropped[i]++
				}
				c.Close()
			}
		}
	}
	note := fmt.Sprintf("Reload against restart of %d real frpc tunnels (frp %s), one proxy of each moved to another remotePort, median of %d: "+
		"%s %.2fs, %d of %d open connections through unchanged proxies dropped; %s %.2fs, %d of %d dropped. Target: no dropped connection on reload.",
		n, sc.Version, runs, methods[0].name, medianOf(walls[0]).Seconds(), dropped[0], n*runs, methods[1].name, medianOf(walls[1]).Seconds(), dropped[1], n*runs)
	fmt.Println("note:", note)
	return []string{note}, nil
}

// conn is one open connection through a tunnel to the echo server.
type conn struct {
	net.Conn
	r *bufio.Reader
}

func (c conn) alive() bool {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return false
	}
	l, err := c.r.ReadString('\n')
	return err == nil && strings.TrimSpace(l) == "ping"
}

// openThrough opens one connection through each client's unchanged
// proxy, and checks that it echoes.
func openThrough(sc *sandbox.FRPScene, clients []string) ([]conn, error) {
	var conns []conn
	for _, u := range clients {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", sc.RemotePorts[u]), 3*time.Second)
		if err != nil {
			return nil, fmt.Errorf("through %s: %w", u, err)
		}
		cc := conn{Conn: c, r: bufio.NewReader(c)}
		if !cc.alive() {
			return nil, fmt.Errorf("through %s: no echo", u)
		}
		conns = append(conns, cc)
	}
	return conns, nil
}
