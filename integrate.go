package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moonfrp/moonfrp-bulk/integrate"
	"github.com/moonfrp/moonfrp-bulk/report"
)

// integrate carries out `moonfrp-bulk integrate`.
func (a *app) integrate(c IntegrateCmd) error {
	s := a.streams
	fail := func(code int, err error) error {
		return &exitError{code, "integrate: " + err.Error()}
	}
	dir, err := integrate.Find(c.MoonfrpDir)
	if err != nil {
		return fail(exitUsage, err)
	}
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return fail(exitCannotRun, fmt.Errorf("find this binary: %w", err))
	}
	opt := integrate.Options{Dir: dir, ShimDir: c.ShimDir, Shim: shim, Bin: bin}
	ctx := context.Background()
	switch {
	case c.Check && c.Undo:
		return fail(exitUsage, errors.New("--check and --undo exclude each other"))
	case c.Check:
		st, err := integrate.Check(ctx, dir)
		if err != nil {
			return fail(exitCannotRun, err)
		}
		report.IntegrationStatus(s, dir, st)
		if !st.Integrated() {
			return &exitError{exitFailed, ""}
		}
		return nil
	case c.Undo:
		ch, err := integrate.Undo(opt)
		if err != nil {
			return fail(exitCannotRun, err)
		}
		if ch.Done == "absent" {
			fmt.Fprintf(s.Out, "moonfrp-bulk was not integrated in %s; nothing to undo\n", ch.Services)
		} else {
			fmt.Fprintf(s.Out, "Removed moonfrp-bulk from %s; MoonFRP's own service functions run again\n", ch.Services)
		}
		return nil
	}
	ch, err := integrate.Apply(opt)
	if err != nil {
		return fail(exitCannotRun, err)
	}
	st, err := integrate.Check(ctx, dir)
	if err != nil {
		return fail(exitCannotRun, fmt.Errorf("integrated, but checking it failed: %w", err))
	}
	report.Integrated(s, ch.Services, ch.Shim, ch.Backup, ch.Done, st)
	if !st.Integrated() {
		return &exitError{exitFailed, ""}
	}
	return nil
}
