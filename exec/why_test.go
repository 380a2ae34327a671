package exec

import "testing"

// account is the one place a unit's why becomes its result's words: the
// table holds each kind of ending and what its Reason, Detail and Stage
// must be.
func TestAccount(t *testing.T) {
	tests := []struct {
		name       string
		ok         bool
		why        why
		withDetail bool
		stage      Stage
		reason     string
		detail     string
	}{
		{name: "success", ok: true, stage: StageNone},
		{name: "success keeps no notes", ok: true, why: why{notes: []string{"restarted, not reloaded: x"}}, stage: StageNone},
		{name: "left as it was", why: why{stage: StagePreflight, text: "left running: config invalid: bad", whole: true},
			withDetail: true, stage: StagePreflight, reason: "left running: config invalid: bad", detail: "left running: config invalid: bad"},
		{name: "never launched: no findings of a run that did not happen",
			why:   why{stage: StageNotStarted, text: "not started (interrupted)", whole: true, notes: []string{"restarted, not reloaded: x"}},
			stage: StageNotStarted, reason: "not started (interrupted)"},
		{name: "ran and failed: its notes follow",
			why:   why{stage: StageTunnel, text: "tunnel not up within 10s: not logged in", notes: []string{"restarted, not reloaded: x"}},
			stage: StageTunnel, reason: "tunnel not up within 10s: not logged in",
			detail: "tunnel not up within 10s: not logged in\nrestarted, not reloaded: x"},
		{name: "systemctl's own words when nothing else was seen", stage: StageOperation,
			reason: "systemctl restart exited with status 1", detail: "systemctl restart exited with status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unitRun{res: Result{Operation: "restart", OK: tt.ok}, why: tt.why}
			if !tt.ok && tt.why.text == "" {
				u.res.ExitCode = 1
			}
			u.account("", nil, tt.withDetail)
			if u.res.Stage != tt.stage || u.res.Reason != tt.reason || u.res.Detail != tt.detail {
				t.Errorf("stage %v, reason %q, detail %q; want %v, %q, %q", u.res.Stage, u.res.Reason, u.res.Detail, tt.stage, tt.reason, tt.detail)
			}
		})
	}
}

func TestStageNames(t *testing.T) {
	seen := map[string]bool{}
	for s := StageNone + 1; s <= StageAbandoned; s++ {
		name := s.String()
		if name == "" || seen[name] {
			t.Errorf("stage %d: name %q is empty or taken", s, name)
		}
		seen[name] = true
	}
	if got := Stage(99).String(); got != "stage(99)" {
		t.Errorf("an unknown stage prints %q", got)
	}
}
