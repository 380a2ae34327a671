package report

import (
	"fmt"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/integrate"
)

// Integrated reports what `integrate` did and what bash now runs.
func Integrated(s *Streams, services, shim, backup, done string, st integrate.Status, watch integrate.Watch) {
	w := s.Out
	switch done {
	case "unchanged":
		fmt.Fprintf(w, "moonfrp-bulk is already integrated in %s\n", services)
	case "updated":
		fmt.Fprintf(w, "Updated the moonfrp-bulk block in %s\n", services)
	default:
		fmt.Fprintf(w, "Integrated moonfrp-bulk into %s\n", services)
	}
	fmt.Fprintf(w, "  shim:   %s\n", shim)
	if backup != "" {
		fmt.Fprintf(w, "  backup: %s\n", backup)
	}
	fmt.Fprintf(w, "  check:  %d of %d service functions run through moonfrp-bulk\n", st.Shimmed(), len(integrate.Functions))
	if watch.Installed {
		fmt.Fprintf(w, "  watch:  %s\n", watch)
	}
	fmt.Fprintln(w, "Check with 'moonfrp-bulk integrate --check'; undo with 'moonfrp-bulk integrate --undo'.")
}

// IntegrationStatus prints --check's findings: one line per function and
// a verdict that says what to do.
func IntegrationStatus(s *Streams, dir string, st integrate.Status, watch integrate.Watch) {
	w := s.Out
	fmt.Fprintf(w, "MoonFRP at %s, loaded as moonfrp.sh does (%s):\n", dir, strings.Join(st.Modules, ", "))
	for _, fn := range integrate.Functions {
		fmt.Fprintf(w, "  %-24s %s\n", fn, st.Owner[fn])
	}
	switch {
	case st.Integrated():
		fmt.Fprintln(w, "Integrated: every service function runs through moonfrp-bulk.")
	case !st.Block:
		fmt.Fprintln(w, "Not integrated: moonfrp-services.sh has no moonfrp-bulk block (a MoonFRP upgrade replaces the file). Run 'moonfrp-bulk integrate' to restore it.")
	default:
		fmt.Fprintln(w, "Partly integrated: the block is there, but MoonFRP redefines some functions after it. Run 'moonfrp-bulk integrate' again, and report this if it stays.")
	}
	if watch.Installed {
		fmt.Fprintf(w, "Watch: %s\n", watch)
	}
}
