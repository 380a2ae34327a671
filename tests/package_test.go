package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// TestDebianPackageInstallsAndRuns installs the .deb that `make release`
// built, with dpkg, on this machine: the binary and the shim work from
// their installed paths, the man page and completions are in place, and
// removing the package takes every file away again.
func TestDebianPackageInstallsAndRuns(t *testing.T) {
	ci := os.Getenv("CI") == "true"
	need := func(format string, args ...any) {
		t.Helper()
		if ci {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	if os.Geteuid() != 0 {
		need("installing a package needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		need("dpkg not found: not a Debian machine")
	}
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatalf("dpkg --print-architecture: %v", err)
	}
	// The .debs carry Debian's architecture names, as dpkg says them.
	arch := strings.TrimSpace(string(out))
	debs, _ := filepath.Glob("../dist/moonfrp-bulk_*_" + arch + ".deb")
	if len(debs) != 1 {
		need("no single .deb for %s in dist/ (%v): run make release first", strings.TrimSpace(string(out)), debs)
	}
	if exec.Command("dpkg", "-s", "moonfrp-bulk").Run() == nil {
		need("moonfrp-bulk is installed on this machine already; the test would replace it")
	}
	if _, err := os.Lstat("/usr/bin/moonfrp-bulk"); err == nil {
		need("/usr/bin/moonfrp-bulk exists outside any package; the test would replace it")
	}

	dpkg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("dpkg", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command("dpkg", "--purge", "moonfrp-bulk").Run() })
	dpkg("-i", debs[0])

	v, err := exec.Command("/usr/bin/moonfrp-bulk", "--version").Output()
	if err != nil || !regexp.MustCompile(`^moonfrp-bulk \d+\.\d+\.\d+\S*\n$`).Match(v) {
		t.Errorf("installed moonfrp-bulk --version: %q, %v", v, err)
	}
	ldd, _ := exec.Command("file", "/usr/bin/moonfrp-bulk").Output()
	if len(ldd) > 0 && !strings.Contains(string(ldd), "statically linked") {
		t.Errorf("the packaged binary is not static: %s", ldd)
	}
	for _, f := range []string{"/usr/share/moonfrp-bulk/moonfrp-bulk.sh", "/usr/share/man/man1/moonfrp-bulk.1.gz",
		"/usr/share/bash-completion/completions/moonfrp-bulk", "/usr/share/fish/vendor_completions.d/moonfrp-bulk.fish"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if out, err := exec.Command("sh", "-c", "gzip -dc /usr/share/man/man1/moonfrp-bulk.1.gz | head -20").Output(); err != nil || !strings.Contains(string(out), "MOONFRP-BULK") {
		t.Errorf("man page: %v\n%s", err, out)
	}
	out, err = exec.Command("bash", "-c", "source /usr/share/bash-completion/completions/moonfrp-bulk && complete -p moonfrp-bulk").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-F _moonfrp_bulk moonfrp-bulk") {
		t.Errorf("bash completion: %v: %s", err, out)
	}

	// The installed shim, sourced after MoonFRP's services module, runs
	// the installed binary (found on PATH) against a real manager.
	specs := failingFleet(3, nil)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	before := invocationIDs(t, sb, sandbox.Names(specs))
	work := filepath.Join(sb.RuntimeDir, "pkg")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	copyInto(t, work, "bash/moonfrp-services.sh")
	cmd := sb.Command(context.Background(), "bash", "-c",
		"source "+filepath.Join(work, "moonfrp-services.sh")+"; source /usr/share/moonfrp-bulk/moonfrp-bulk.sh; bulk_restart_services 3")
	cmd.Env = append(cmd.Env, "MOONFRP_BULK_ARGS=--user", "PATH=/usr/bin:/bin")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Bulk restart complete: 3 succeeded, 0 failed") {
		t.Errorf("installed shim: %v\n%s", err, out)
	}
	after := invocationIDs(t, sb, sandbox.Names(specs))
	for n, id := range before {
		if after[n] == id {
			t.Errorf("%s was not restarted through the installed shim", n)
		}
	}

	dpkg("--purge", "moonfrp-bulk")
	for _, f := range []string{"/usr/bin/moonfrp-bulk", "/usr/share/moonfrp-bulk", "/usr/share/man/man1/moonfrp-bulk.1.gz"} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s left after dpkg --purge", f)
		}
	}
}

// TestHostPackageWiresIntoMoonFRP installs the .deb on a booted, clean
// Debian host that has (the stand-in) MoonFRP: the maintainer scripts
// integrate it on install, leave an operator's undo alone on upgrade, and
// take it out again on removal.
func TestHostPackageWiresIntoMoonFRP(t *testing.T) {
	out, _ := exec.Command("dpkg", "--print-architecture").Output()
	debs, _ := filepath.Glob("../dist/moonfrp-bulk_*_" + strings.TrimSpace(string(out)) + ".deb")
	if len(debs) != 1 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no single .deb for this machine in dist/ (%v): run make release first", debs)
		}
		t.Skipf("no .deb in dist/: run make release first")
	}
	h := newHost(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	installStandInOnHost(t, h)
	must(h.Install(debs[0], "/root/moonfrp-bulk.deb", 0o644))
	services := h.Proc("/usr/local/bin/moonfrp-services.sh")
	integrated := func() bool {
		data, err := os.ReadFile(services)
		must(err)
		return strings.Contains(string(data), "# >>> moonfrp-bulk >>>") // integrate's block
	}

	r := hostRun(t, h, "dpkg", "-i", "/root/moonfrp-bulk.deb")
	wantCode(t, r, 0)
	wantContains(t, "dpkg -i", r.stdout, "Integrated moonfrp-bulk into /usr/local/bin/moonfrp-services.sh")
	r = hostRun(t, h, "moonfrp-bulk", "integrate", "--check")
	wantCode(t, r, 0)
	if !integrated() {
		t.Fatal("installing the package did not integrate it into MoonFRP")
	}

	// An operator's undo survives an upgrade (here: the same package again).
	wantCode(t, hostRun(t, h, "moonfrp-bulk", "integrate", "--undo"), 0)
	wantCode(t, hostRun(t, h, "dpkg", "-i", "/root/moonfrp-bulk.deb"), 0)
	if integrated() {
		t.Error("an upgrade integrated again what the operator had undone")
	}
	wantCode(t, hostRun(t, h, "moonfrp-bulk", "integrate"), 0)

	r = hostRun(t, h, "dpkg", "--remove", "moonfrp-bulk")
	wantCode(t, r, 0)
	if integrated() {
		t.Error("removing the package left moonfrp-bulk in MoonFRP's services module")
	}
	if _, err := os.Lstat(h.Proc("/usr/bin/moonfrp-bulk")); err == nil {
		t.Error("the binary is still there after dpkg --remove")
	}
}
