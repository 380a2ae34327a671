package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// readme returns the README's text.
func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// shBlocks returns the bodies of the sh code blocks in s.
func shBlocks(s string) []string {
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(s, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// readmeShell returns every command line of the README's sh blocks, in
// order, as written (bash reads the comments), except those of the
// recipes section (TestReadmeRecipesWithJq runs them and checks what they
// print).
func readmeShell(t *testing.T) []string {
	t.Helper()
	s := readme(t)
	if i := strings.Index(s, "### Recipes for scripts"); i >= 0 {
		j := strings.Index(s[i:], "\n## ")
		if j < 0 {
			t.Fatal("README: nothing after the recipes section")
		}
		s = s[:i] + s[i+j:]
	}
	var lines []string
	for _, block := range shBlocks(s) {
		for _, l := range strings.Split(block, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

// command is line without its trailing comment, for matching it against
// the tables below (it is run as written): the first " # " outside
// quotes starts the comment.
func command(line string) string {
	for i := 0; i+3 <= len(line); i++ {
		if line[i:i+3] == " # " && strings.Count(line[:i], "'")%2 == 0 && strings.Count(line[:i], `"`)%2 == 0 {
			return strings.TrimSpace(line[:i])
		}
	}
	return strings.TrimSpace(line)
}

// readmeElsewhere says where each README command that needs more than a
// user manager is run. A test named here runs it as written: the test's
// source holds the command's words as its arguments.
var readmeElsewhere = []struct {
	prefix string // the README line starts with it
	test   string // the test that runs it, "" when none can
	why    string
}{
	{"make demo", "TestReadmeMakeDemo", "it runs make demo and checks each step's exit code and summary"},
	{"make test", "", "CI runs it, and this test with it"},
	{"V=", "TestDebianPackageInstallsAndRuns", "it sets the release and the architecture that the install line uses"},
	{"curl -fLO", "", "it downloads a published release; the package test installs the same files that make release builds"},
	{"sha256sum --check", "TestDebianPackageInstallsAndRuns", "it runs the README's line in dist/"},
	{"moonfrp-bulk integrate", "TestHostPackageWiresIntoMoonFRP", "on a booted host with MoonFRP, as root"},
	{"cd examples/ansible && cp", "TestAnsibleFleet", "the fleet's module library holds the binary as moonfrp_bulk"},
	{"ansible tunnel_hosts", "", "it acts on the hosts' system managers; the fleet's hosts are user managers, and TestAnsibleFleet runs the same module and arguments through the example playbook"},
	{"ansible-playbook restart-tunnels.yml", "TestAnsibleFleet", "over ssh, against three sandboxed hosts"},
}

// TestReadmeCommandsRunElsewhereAsWritten checks that every README command
// that this file does not run is one that a named test runs, so that a
// new command in the README needs a test that runs it.
func TestReadmeCommandsRunElsewhereAsWritten(t *testing.T) {
	src := map[string]string{}
	files, _ := filepath.Glob("*_test.go")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src[f] = string(data)
	}
	testSource := func(name string) string {
		for _, s := range src {
			if i := strings.Index(s, "\nfunc "+name+"(t *testing.T) {"); i >= 0 {
				end := strings.Index(s[i+1:], "\nfunc ")
				if end < 0 {
					return s[i:]
				}
				return s[i : i+1+end]
			}
		}
		return ""
	}
	for _, line := range readmeShell(t) {
		line = command(line)
		if readmeRunsHere(line) {
			continue
		}
		found := false
		for _, e := range readmeElsewhere {
			if !strings.HasPrefix(line, e.prefix) {
				continue
			}
			found = true
			if e.test == "" {
				t.Logf("not run by a test: %q (%s)", line, e.why)
				continue
			}
			body := testSource(e.test)
			if body == "" {
				t.Errorf("%q: the test %s that runs it does not exist", line, e.test)
				continue
			}
			if strings.HasPrefix(line, "moonfrp-bulk ") {
				// As hostRun's arguments: "moonfrp-bulk", "integrate", "--check".
				words := `"` + strings.Join(strings.Fields(line), `", "`) + `")`
				if !strings.Contains(body, words) {
					t.Errorf("%q: %s does not run it (no %s)", line, e.test, words)
				}
			}
		}
		if !found {
			t.Errorf("README command %q is run by no test: run it in TestReadmeCommands or name its test in readmeElsewhere", line)
		}
	}
}

// readmeRunsHere says whether TestReadmeCommands runs line: moonfrp-bulk's
// commands on one manager.
func readmeRunsHere(line string) bool {
	return strings.HasPrefix(line, "moonfrp-bulk ") && !strings.HasPrefix(line, "moonfrp-bulk integrate")
}

// readmeCodes are the exit codes each README command may end with on
// TestReadmeCommands's fleet, whose moonfrp-client-7 crashes at every
// start: 1 only where the command acts on it, 7 only for a reload that
// leaves units frp cannot reload in place. A new README command needs a
// line here.
var readmeCodes = map[string][]int{
	"moonfrp-bulk restart":                                          {1},
	"moonfrp-bulk restart -j 50 --tunnel-deadline=30s":              {1},
	"moonfrp-bulk restart --filter=tag:env:prod --dry-run":          {0},
	"moonfrp-bulk start --filter=status:failed":                     {0, 1}, // client-7 may have hit its start limit (failed), or loop (activating)
	"moonfrp-bulk stop --filter='name:*-eu-*' --filter=type:client": {0},
	"moonfrp-bulk reload moonfrp-client-3 moonfrp-client-4":         {7},
	"moonfrp-bulk reload --filter=config:changed":                   {0},
	"moonfrp-bulk reload --restart-if-needed":                       {1},
	"moonfrp-bulk list --filter=status:auto-restart":                {0},
	"moonfrp-bulk restart --canary=2 --max-fail=5%":                 {1},
	"moonfrp-bulk restart --filter=last:failed":                     {1},
	"moonfrp-bulk last":                                             {0},
	"moonfrp-bulk last -n 5":                                        {0},
	"moonfrp-bulk last -o json | jq .":                              {0},
}

// TestReadmeCommands runs every moonfrp-bulk command of the README's
// examples, in the README's order, as an operator would type it (with
// MOONFRP_BULK_USER=1 for the sandbox's user manager), against a fleet
// with one broken client and a MoonFRP tag index. Each must end with the
// exit code that the README documents for what it does there
// (readmeCodes; a pipeline's is moonfrp-bulk's too); a dry run must change
// nothing, and a retry of what failed must act on exactly that.
func TestReadmeCommands(t *testing.T) {
	specs := sandbox.Fleet(8, 50*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	dataDir := filepath.Join(sb.RuntimeDir, "data")
	if err := sandbox.WriteIndex(dataDir, sandbox.FleetIndex(8)); err != nil {
		t.Fatal(err)
	}
	// moonfrp-client-7 crashes and systemd restarts it by itself: the
	// others show whether a command acted.
	var names []string
	for _, n := range sandbox.Names(specs) {
		if n != "moonfrp-client-7" {
			names = append(names, n)
		}
	}
	ran := 0
	for _, line := range readmeShell(t) {
		if !readmeRunsHere(command(line)) {
			continue
		}
		ran++
		want, ok := readmeCodes[command(line)]
		if !ok {
			t.Errorf("README command %q has no expected exit code in readmeCodes", command(line))
			continue
		}
		before := invocationIDs(t, sb, names)
		cmd := sb.Command(context.Background(), "bash", "-o", "pipefail", "-c", line)
		cmd.Env = append(cmd.Env, "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "MOONFRP_BULK_USER=1",
			"MOONFRP_DATA_DIR="+dataDir, "NO_COLOR=1")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("%s: %v", line, err)
		}
		t.Logf("%s: exit %d\nstderr:\n%s", line, code, stderr.String())
		if !slices.Contains(want, code) {
			t.Errorf("%s: exit %d, want one of %v\nstdout:\n%s\nstderr:\n%s", line, code, want, stdout.String(), stderr.String())
		}
		switch {
		case strings.Contains(line, "--dry-run"):
			if after := invocationIDs(t, sb, names); !sameIDs(before, after) {
				t.Errorf("%s changed units: %v -> %v", line, before, after)
			}
		case strings.Contains(line, "--filter=last:failed"):
			if !strings.Contains(stderr.String(), "Restarting 1 service(s)") || !strings.Contains(stderr.String(), "moonfrp-client-7") {
				t.Errorf("%s: want exactly moonfrp-client-7, which failed before:\n%s", line, stderr.String())
			}
		}
	}
	if ran != len(readmeCodes) {
		t.Errorf("ran %d of the README's commands, readmeCodes knows %d: a command left the README", ran, len(readmeCodes))
	}
	if ran < 10 {
		t.Errorf("ran %d of the README's commands; the README's examples were not found", ran)
	}
}

func sameIDs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestReadmeMakeDemo runs `make demo` as the README gives it, and checks
// that it shows what the README promises: real frp tunnels, three of them
// broken and named with frp's words, each step ending as it should.
func TestReadmeMakeDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("make demo needs root")
		}
		t.Skip("make demo needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "demo")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "TERM=dumb")
	// make, go run, the demo and its sandbox are one process group: a
	// timeout ends all of them (the demo tears its sandbox down on
	// SIGTERM), not make alone while the others hold the output open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("make demo:\n%s", out)
	if err != nil {
		t.Fatalf("make demo: %v", err)
	}
	text := string(out)
	if !strings.Contains(text, "tunnels installed (real frp ") {
		t.Fatal("the demo did not run real frp tunnels")
	}
	// Each step, in order, and the exit code it must end with: the dry run
	// and the list change nothing and succeed; the start, the restart and
	// the retry of what failed report the broken tunnels (exit 1).
	steps := []struct{ cmd, code string }{
		{"start --filter=tag:env:prod --dry-run", "0"},
		{"start --tunnel-deadline=5s", "1"},
		{"restart --tunnel-deadline=5s", "1"},
		{"list --filter=tunnel:down", "0"},
		{"restart --filter=last:failed", "1"},
	}
	// Each step's output: from its "$ moonfrp-bulk" line to the next.
	out2 := map[string]string{}
	rest := text
	for _, st := range steps {
		i := strings.Index(rest, "$ moonfrp-bulk --user "+st.cmd)
		if i < 0 {
			t.Fatalf("the demo did not run %q (in order)", st.cmd)
		}
		rest = rest[i+1:]
		step := rest
		if j := strings.Index(step, "\n$ moonfrp-bulk"); j >= 0 {
			step = step[:j]
		}
		out2[st.cmd] = step
		m := regexp.MustCompile(`\(exit code (\d+)\)`).FindStringSubmatch(step)
		if m == nil || m[1] != st.code {
			t.Errorf("%s: %v, want exit code %s", st.cmd, m, st.code)
		}
	}
	restart := out2["restart --tunnel-deadline=5s"]
	if !regexp.MustCompile(`Bulk restart complete: \d+ succeeded, 3 failed`).MatchString(restart) {
		t.Errorf("the demo's restart did not end with exactly the 3 broken tunnels failed:\n%s", restart)
	}
	// Named with frp's own words: the wrong token, and the closed port.
	for _, want := range []string{`moonfrp-client-7: frp refused the tunnel: [^\n]*token`, `moonfrp-client-33: [^\n]*connection refused`} {
		if !regexp.MustCompile(want).MatchString(restart) {
			t.Errorf("the demo's restart does not say %s:\n%s", want, restart)
		}
	}
}
