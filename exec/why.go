package exec

import (
	"strconv"
	"strings"
)

// Stage is the step of a unit's run that decided that it did not
// succeed (or, on reload, that it needs a restart).
type Stage int

const (
	StageNone       Stage = iota // succeeded
	StagePreflight               // frp's verify refused its config; the unit was left as it was
	StageReload                  // frp's own reload: not sent, refused, or not possible in place
	StageOperation               // the systemctl call failed or timed out
	StageState                   // systemd's state after the operation or its settle window
	StageTunnel                  // frp's proof of the tunnel
	StageNotStarted              // never launched: interrupted, halted, or the manager was lost
	StageAbandoned               // cut short by a second interrupt
)

var stageNames = [...]string{"", "preflight", "reload", "operation", "state", "tunnel", "not-started", "abandoned"}

func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// why is a unit's one account of why it did not succeed: the stage that
// decided it, what was seen there, and findings on the way (a refused
// log file, a reload that became a restart) that belong in its detail.
// Only finish and settle turn it into the result's Reason and Detail.
type why struct {
	stage Stage
	text  string
	// whole says text is the entire reason: nothing ran whose logs
	// could say more (a refused config, a unit never started).
	whole bool
	notes []string
}

// because records what stage s saw go wrong; the unit's logs may add
// their newest error line to it (see explain).
func (u *unitRun) because(s Stage, text string) {
	u.why.stage, u.why.text, u.why.whole = s, text, false
}

// solely records a reason that is complete as it is.
func (u *unitRun) solely(s Stage, text string) {
	u.why.stage, u.why.text, u.why.whole = s, text, true
}

// note keeps a finding for the unit's detail, should it fail after it
// ran.
func (u *unitRun) note(text string) { u.why.notes = append(u.why.notes, text) }

// account fills the result's Stage, Reason and Detail from u's why, once
// its verdict is reached; for a unit that failed after running, frpKey
// and unitLines are the newest lines of its frp log and its own output.
// withDetail says that a whole reason is also its detail (a unit left as
// it was); units never launched or cut short have no more to say.
func (u *unitRun) account(frpKey string, unitLines []string, withDetail bool) {
	r := &u.res
	if u.why.stage == StageNone && !r.OK {
		u.why.stage = StageOperation // systemctl's own exit status and words
	}
	r.Stage = u.why.stage
	if u.why.whole {
		r.Reason = u.why.text
		if withDetail {
			r.Detail = u.why.text
		}
	} else if !r.OK {
		explain(r, u.why.text, frpKey, unitLines)
	}
	if !r.OK && !u.why.whole && len(u.why.notes) > 0 {
		// Findings of a run that went ahead; a unit left as it was, or
		// never launched, has none that are true of it.
		r.Detail += "\n" + strings.Join(u.why.notes, "\n")
	}
}
