package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moonfrp/moonfrp-bulk/integrate"
	"github.com/moonfrp/moonfrp-bulk/report"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// integrate carries out `moonfrp-bulk integrate`.
func (a *app) integrate(c IntegrateCmd) error {
	s := a.streams
	fail := func(code int, err error) error {
		return &exitError{code, "integrate: " + err.Error()}
	}
	dir, err := integrate.Find(c.MoonfrpDir)
	switch {
	case errors.Is(err, integrate.ErrNotMoonFRP):
		return fail(exitUsage, err)
	case err != nil:
		return fail(exitCannotRun, err)
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
	// The watch is a unit of the system manager: root's business.
	var sys systemctl.Runner
	if os.Geteuid() == 0 {
		sys = systemctl.Manager{Path: a.globals.Systemctl}
	}
	switch {
	case c.Check && (c.Undo || c.Watch), c.Undo && c.Watch:
		return fail(exitUsage, errors.New("--check, --undo and --watch exclude each other"))
	case c.Check:
		st, err := integrate.Check(ctx, dir)
		if err != nil {
			return fail(exitCannotRun, err)
		}
		w := integrate.Watch{}
		if sys != nil {
			w = integrate.WatchState(ctx, sys)
		}
		report.IntegrationStatus(s, dir, st, w)
		if !st.Integrated() {
			return &exitError{exitFailed, ""}
		}
		return nil
	case c.Undo:
		// The watch goes first: undoing writes the very file it watches.
		if sys != nil {
			if _, err := integrate.SetWatch(ctx, sys, false); err != nil {
				return fail(exitCannotRun, err)
			}
		}
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
	services := filepath.Join(dir, integrate.ServicesFile)
	if c.Watch {
		fmt.Fprintf(s.Out, "MoonFRP's %s changed (now %s)\n", services, integrate.Fingerprint(services))
	}
	ch, err := integrate.Apply(opt)
	switch {
	case errors.Is(err, integrate.ErrIncompatible):
		return fail(exitUnknownMoon, err)
	case err != nil:
		return fail(exitCannotRun, err)
	}
	var w integrate.Watch
	if sys != nil {
		if w, err = integrate.SetWatch(ctx, sys, true); err != nil {
			return fail(exitCannotRun, err)
		}
	}
	st, err := integrate.Check(ctx, dir)
	if err != nil {
		if c.Watch {
			// MoonFRP's installer may still be copying its modules.
			fmt.Fprintf(s.Out, "Wired in (%s), but MoonFRP could not be loaded yet to check it: %v\n", ch.Done, err)
			return nil
		}
		return fail(exitCannotRun, fmt.Errorf("integrated, but checking it failed: %w", err))
	}
	report.Integrated(s, ch.Services, ch.Shim, ch.Backup, ch.Done, st, w)
	if !st.Integrated() {
		return &exitError{exitFailed, ""}
	}
	return nil
}
