package main

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"moonfrp-bulk": func() { os.Exit(run(os.Args[1:])) },
		// The same binary under the Ansible module's name.
		"moonfrp_bulk": main,
	})
}

var update = flag.Bool("update", false, "rewrite the golden files (cmp) in testdata/script from this run")

// TestScripts runs testdata/script/*.txtar: the CLI's promises that need
// no service manager (help, versions, and bad input), one scenario a file.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *update,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// exit CODE CMD ARGS...: run CMD and require that exit code.
			"exit": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: exit CODE command args...")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exit: bad code %q", args[0])
				}
				code := 0
				var ee *exec.ExitError
				if err := ts.Exec(args[1], args[2:]...); errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					ts.Fatalf("exit: %v", err)
				}
				if code != want {
					ts.Fatalf("%s exited %d, want %d", args[1], code, want)
				}
			},
		},
	})
}
