package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
	// Installed as the README says, checksum first, from dist/ as if
	// downloaded there.
	install := ""
	for _, l := range readmeShell(t) {
		if strings.HasPrefix(l, "sha256sum --check") {
			install = l
		}
	}
	if install == "" {
		t.Fatal("the README has no install line (sha256sum --check ... && dpkg -i ...)")
	}
	// The release's version as GoReleaser says it, not read back from the
	// file's name: a name that the README's line cannot build fails here.
	var meta struct{ Version string }
	if data, err := os.ReadFile("../dist/metadata.json"); err != nil || json.Unmarshal(data, &meta) != nil || meta.Version == "" {
		t.Fatalf("dist/metadata.json: no version (%v)", err)
	}
	version := meta.Version
	inst := exec.Command("bash", "-c", install)
	inst.Dir = filepath.Dir(debs[0])
	inst.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "V="+version, "A="+arch)
	if out, err := inst.CombinedOutput(); err != nil {
		t.Fatalf("the README's install line %q: %v\n%s", install, err, out)
	}

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
// take it out again on removal. A MoonFRP upgrade (its modules copied
// over the old ones, as its install.sh does) is wired in again by the
// package's watch, while the watch is on; a MoonFRP whose service
// functions moonfrp-bulk does not know is refused, and left as it is.
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
	ht, err := sandbox.NewHostTunnels(context.Background(), h, sandbox.HostTunnelOpts{FRP: frpBinaries(t, sandbox.FRPDefault), Clients: 2})
	must(err)
	// MoonFRP's next release, staged where its installer would download it.
	ents, err := os.ReadDir("moonfrp")
	must(err)
	for _, e := range ents {
		must(h.Install(filepath.Join("moonfrp", e.Name()), "/root/moonfrp-new/"+e.Name(), 0o755))
	}
	services := h.Proc("/usr/local/bin/moonfrp-services.sh")
	integrated := func() bool {
		data, err := os.ReadFile(services)
		must(err)
		return strings.Contains(string(data), "# >>> moonfrp-bulk >>>") // integrate's block
	}
	upgradeMoonFRP := func() {
		t.Helper()
		wantCode(t, hostRun(t, h, "sh", "-c", "cp /root/moonfrp-new/* /usr/local/bin/"), 0)
	}
	// awaitIntegrated waits for the watch to have wired moonfrp-bulk in.
	awaitIntegrated := func() {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !integrated() {
			if time.Now().After(deadline) {
				j, _ := h.Run(context.Background(), "journalctl", "--no-pager", "-u", "moonfrp-bulk-integrate")
				t.Fatalf("MoonFRP's upgrade was not wired in within 15s; the watch's journal:\n%s", j)
			}
			time.Sleep(100 * time.Millisecond) // a file's change sends no event that a test could wait on
		}
		wantCode(t, hostRun(t, h, "moonfrp-bulk", "integrate", "--check"), 0)
	}

	r := hostRun(t, h, "dpkg", "-i", "/root/moonfrp-bulk.deb")
	wantCode(t, r, 0)
	wantContains(t, "dpkg -i", r.stdout, "Integrated moonfrp-bulk into /usr/local/bin/moonfrp-services.sh")
	r = hostRun(t, h, "moonfrp-bulk", "integrate", "--check")
	wantCode(t, r, 0)
	wantContains(t, "integrate --check", r.stdout, "Watch: on")
	if !integrated() {
		t.Fatal("installing the package did not integrate it into MoonFRP")
	}

	// MoonFRP upgrades itself: the watch wires moonfrp-bulk in again, and
	// MoonFRP's CLI runs through it.
	upgradeMoonFRP()
	awaitIntegrated()
	before := hostInvocations(t, h, ht.Names)
	r = hostRun(t, h, "moonfrp", "service", "restart")
	wantCode(t, r, 0)
	wantContains(t, "moonfrp service restart", r.stderr, "Bulk restart complete: 3 succeeded, 0 failed")
	for u, id := range hostInvocations(t, h, ht.Names) {
		if id == before[u] {
			t.Errorf("%s was not restarted", u)
		}
	}
	j, _ := h.Run(context.Background(), "journalctl", "--no-pager", "-u", "moonfrp-bulk-integrate")
	wantContains(t, "the watch's journal", j, "MoonFRP's /usr/local/bin/moonfrp-services.sh changed (now sha256:", "Integrated moonfrp-bulk into")

	// A MoonFRP whose service functions moonfrp-bulk does not know: the
	// watch refuses it and says why in the journal; so does integrate,
	// with exit code 5, and the file stays as MoonFRP wrote it.
	odd := "bulk_frobnicate_services() { :; }\n"
	orig, err := os.ReadFile("moonfrp/moonfrp-services.sh")
	must(err)
	must(h.WriteFile("/root/moonfrp-odd/moonfrp-services.sh", append(append([]byte(nil), orig...), odd...), 0o644))
	wantCode(t, hostRun(t, h, "cp", "/root/moonfrp-odd/moonfrp-services.sh", "/usr/local/bin/moonfrp-services.sh"), 0)
	deadline := time.Now().Add(15 * time.Second)
	for j, _ = h.Run(context.Background(), "journalctl", "--no-pager", "-u", "moonfrp-bulk-integrate"); !strings.Contains(j, "bulk_frobnicate_services()"); j, _ = h.Run(context.Background(), "journalctl", "--no-pager", "-u", "moonfrp-bulk-integrate") {
		if time.Now().After(deadline) {
			t.Fatalf("the watch did not refuse the unknown MoonFRP within 15s:\n%s", j)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r = hostRun(t, h, "moonfrp-bulk", "integrate")
	wantCode(t, r, 5)
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "defines bulk_frobnicate_services()") {
		t.Errorf("integrate on an unknown MoonFRP: want one line naming the function, got:\n%s", r.stderr)
	}
	if data, _ := os.ReadFile(services); string(data) != string(orig)+odd {
		t.Error("moonfrp-services.sh of an unknown MoonFRP was changed")
	}
	upgradeMoonFRP() // back to a MoonFRP it knows
	awaitIntegrated()

	// An operator's undo turns the watch off: an upgrade then leaves
	// MoonFRP alone. It survives a package upgrade (the same package).
	wantCode(t, hostRun(t, h, "moonfrp-bulk", "integrate", "--undo"), 0)
	r = hostRun(t, h, "moonfrp-bulk", "integrate", "--check")
	wantCode(t, r, 1)
	wantContains(t, "integrate --check after --undo", r.stdout, "Watch: off")
	upgradeMoonFRP()
	if active, _ := h.Run(context.Background(), "systemctl", "is-active", "moonfrp-bulk-integrate.path"); strings.TrimSpace(active) != "inactive" {
		t.Errorf("the watch is %q after integrate --undo", active)
	}
	if integrated() {
		t.Error("a MoonFRP upgrade was wired in after integrate --undo")
	}
	wantCode(t, hostRun(t, h, "dpkg", "-i", "/root/moonfrp-bulk.deb"), 0)
	if integrated() {
		t.Error("an upgrade integrated again what the operator had undone")
	}
	wantCode(t, hostRun(t, h, "moonfrp-bulk", "integrate"), 0)
	wantContains(t, "integrate --check", hostRun(t, h, "moonfrp-bulk", "integrate", "--check").stdout, "Watch: on")

	// Removing the package takes the integration and the watch away.
	r = hostRun(t, h, "dpkg", "--remove", "moonfrp-bulk")
	wantCode(t, r, 0)
	if integrated() {
		t.Error("removing the package left moonfrp-bulk in MoonFRP's services module")
	}
	if _, err := os.Lstat(h.Proc("/usr/bin/moonfrp-bulk")); err == nil {
		t.Error("the binary is still there after dpkg --remove")
	}
	if out, _ := h.Run(context.Background(), "systemctl", "list-unit-files", "--no-legend", "moonfrp-bulk-integrate.path"); strings.TrimSpace(out) != "" {
		t.Errorf("the watch is still known after dpkg --remove: %s", out)
	}
	upgradeMoonFRP()
	if integrated() {
		t.Error("a MoonFRP upgrade was wired in after the package was removed")
	}
}
