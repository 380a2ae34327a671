package report

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/joblog"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
)

// Last prints runs from the job log, newest first: a summary line and the
// units that failed or were not started, or, with -o json, the records
// themselves, one a line. skipped lines of the log that are not records
// are mentioned, on Err.
func Last(s *Streams, mode Mode, recs []joblog.Record, skipped int) {
	if mode == JSON {
		enc := json.NewEncoder(s.Out)
		for _, r := range recs {
			enc.Encode(r) // a lost stream is the caller's to report (see Streams.Lost)
		}
	} else {
		for i, r := range recs {
			if i > 0 {
				fmt.Fprintln(s.Out)
			}
			lastRun(s, r, i == 0)
		}
	}
	if skipped > 0 {
		Warn(s.Err, "%d line(s) of the job log are not a run's record and were passed over", skipped)
	}
}

// lastRun prints one run; newest says that last: filters select from it.
func lastRun(s *Streams, r joblog.Record, newest bool) {
	end := r.Time
	if t, err := time.Parse(time.RFC3339Nano, r.Time); err == nil {
		end = t.Local().Format("2006-01-02 15:04:05 MST")
	}
	how := ""
	switch {
	case r.Interrupted:
		how = ", interrupted"
	case r.Halted != "":
		how = ", halted: " + sanitize.Line(r.Halted)
	}
	fmt.Fprintf(s.Out, "Last %s on the %s manager, ended %s after %s%s: %d succeeded, %d failed, %d not started of %d\n",
		sanitize.Line(r.Operation), sanitize.Line(r.Manager), sanitize.Line(end), (time.Duration(r.DurationMS) * time.Millisecond).Round(100*time.Millisecond),
		how, r.Succeeded, r.Failed, r.NotStarted, r.Units)
	if len(r.Filters) > 0 {
		fmt.Fprintf(s.Out, "  filters: %s\n", sanitize.Line(fmt.Sprint(r.Filters)))
	}
	for _, e := range r.Results {
		if !e.OK {
			fmt.Fprintf(s.Out, "  - %s: %s\n", discover.ShortName(sanitize.Line(e.Unit)), sanitize.Line(e.Reason))
		}
	}
	if newest && r.Failed+r.NotStarted > 0 {
		fmt.Fprintln(s.Out, "Retry them with --filter=last:unfinished (or last:failed, last:not-started).")
	}
}
