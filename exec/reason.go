package exec

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// stateProps are the properties read after an operation, for every unit in
// one batched `systemctl show`.
var stateProps = "Id,LoadState,ActiveState,SubState,Result,NRestarts,ExecMainCode,ExecMainStatus,ExecStartPre,ExecReload,ReloadResult," +
	"ExecMainStartTimestampMonotonic,ActiveEnterTimestampMonotonic,MainPID"

func state(p systemctl.Properties) string {
	if p == nil || p["ActiveState"] == "" {
		return ""
	}
	return p["ActiveState"] + "/" + p["SubState"]
}

func atou(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// exitWords renders a CLD_* code and status: exited with status 1, killed
// by signal 9, dumped core.
func exitWords(code, status string) string {
	switch code {
	case "1", "exited":
		if why, ok := systemdExits[status]; ok {
			return "exited with status " + status + " (" + why + ")"
		}
		return "exited with status " + status
	case "2", "killed":
		return "killed by signal " + signalName(status)
	case "3", "dumped":
		return "dumped core (signal " + signalName(status) + ")"
	}
	return ""
}

// systemdExits are the statuses systemd itself gives a process that it
// could not set up (systemd.exec(5), "Process Exit Codes"): the program
// never ran.
var systemdExits = map[string]string{
	"200": "CHDIR: systemd could not change to its WorkingDirectory=",
	"203": "EXEC: systemd could not run its ExecStart= program",
	"204": "MEMORY: out of memory while setting it up",
	"209": "STDOUT: systemd could not open its StandardOutput=/StandardError= file",
	"210": "CHROOT: systemd could not change to its RootDirectory=",
	"214": "SETSCHEDULER: systemd could not set its scheduling",
	"216": "GROUP: its Group= does not exist",
	"217": "USER: its User= does not exist",
	"218": "CAPABILITIES: systemd could not set its capabilities",
	"226": "NAMESPACE: systemd could not set up its file system namespace (ProtectSystem=, ReadWritePaths= ...)",
	"227": "NO_NEW_PRIVILEGES: systemd could not set NoNewPrivileges=",
	"233": "RUNTIME_DIRECTORY: systemd could not create its RuntimeDirectory=",
	"236": "LOGS_DIRECTORY: systemd could not create its LogsDirectory=",
}

func signalName(s string) string {
	names := map[string]string{"1": "HUP", "2": "INT", "6": "ABRT", "9": "KILL", "11": "SEGV", "15": "TERM"}
	if n, ok := names[s]; ok {
		return "SIG" + n
	}
	return s
}

// failedCommand names the command of an Exec* property that ended
// badly, in words: "ExecStartPre /bin/false exited with status 1".
func failedCommand(prop, what string) string {
	for _, c := range systemctl.ParseExec(prop) {
		if c.Code == "" || (c.Code == "exited" && c.Status == "0") {
			continue
		}
		return fmt.Sprintf("%s %s %s", what, c.Path, exitWords(c.Code, c.Status))
	}
	return ""
}

// resultWords explains systemd's Result= for a unit that is not up after
// op. Only what op ran counts: a reload runs ExecReload (its outcome is
// ReloadResult), never ExecStartPre, whose status is a start's, however
// old.
func resultWords(op string, p systemctl.Properties) string {
	switch {
	case op == "reload":
		if a := p["ActiveState"]; a == "inactive" || a == "failed" {
			// systemd reloads only a running unit; a ReloadResult now
			// would be an earlier reload's.
			return "not active, so there is nothing to reload: start it instead"
		}
		if r := p["ReloadResult"]; r != "" && r != "success" {
			if cmd := failedCommand(p["ExecReload"], "ExecReload"); cmd != "" {
				return cmd
			}
			return "reload failed (" + r + ")"
		}
	case p["Result"] == "exit-code":
		if pre := failedCommand(p["ExecStartPre"], "ExecStartPre"); pre != "" {
			return pre
		}
	}
	main := exitWords(p["ExecMainCode"], p["ExecMainStatus"])
	switch p["Result"] {
	case "exit-code", "signal", "core-dump":
		if main != "" {
			return main
		}
		return p["Result"]
	case "timeout":
		return "systemd timed out waiting for it (timeout)"
	case "start-limit-hit":
		return "start limit hit: it restarted too often (start-limit-hit)"
	case "resources":
		return "could not set up its resources: missing file, directory or user (resources)"
	case "oom-kill":
		return "killed by the out-of-memory killer (oom-kill)"
	case "watchdog":
		return "watchdog timeout (watchdog)"
	case "exec-condition", "condition":
		return "a start condition was not met (" + p["Result"] + ")"
	case "protocol":
		return "broke the service protocol (protocol)"
	case "", "success":
		return ""
	}
	return p["Result"]
}

// describe says in words why a unit is not where the operation should have
// left it. restarts is the number of restarts seen during the settle window.
func describe(op string, p systemctl.Properties, restarts int) string {
	if p == nil {
		return ""
	}
	if p["LoadState"] == "not-found" {
		return "unit not found"
	}
	if p["LoadState"] == "masked" {
		return "unit is masked"
	}
	active, sub := p["ActiveState"], p["SubState"]
	if op == "stop" {
		if active != "inactive" && active != "failed" {
			return "still " + active + " (" + sub + ") after stop"
		}
		return ""
	}
	words := resultWords(op, p)
	if words == "" {
		words = exitWords(p["ExecMainCode"], p["ExecMainStatus"])
	}
	switch {
	case restarts > 0 && active == "active":
		n := max(restarts, atoi(p["NRestarts"]))
		what := fmt.Sprintf("restarted %d time", n)
		if n != 1 {
			what += "s"
		}
		what += " right after " + op
		if words != "" {
			what += " (" + words + ")"
		}
		return what
	case sub == "auto-restart" || restarts > 0:
		n := atoi(p["NRestarts"])
		if restarts > n {
			n = restarts
		}
		if words == "" {
			words = "stopped"
		}
		if n == 0 {
			return fmt.Sprintf("%s right after %s (auto-restart loop)", words, op)
		}
		plural := "s"
		if n == 1 {
			plural = ""
		}
		return fmt.Sprintf("%s right after %s (auto-restart loop, %d restart%s)", words, op, n, plural)
	case active == "failed":
		if words == "" {
			words = "failed"
		}
		return words
	case active == "inactive":
		if words == "" {
			return "exited right after " + op + " and stayed down"
		}
		return words + " right after " + op
	case active == "active":
		return ""
	}
	return "still " + active + " (" + sub + ")"
}

// cleanStderr drops systemctl's boilerplate hints and joins what is left.
func cleanStderr(stderr string) string {
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "See \"systemctl") || strings.HasPrefix(l, "See 'systemctl") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, " ")
}

// explain fills r.Reason (one line) and r.Detail from the best sources:
// what the state says, then frp's own log (frpKey, its newest error line),
// then the unit's own log, then systemctl's words.
func explain(r *Result, what, frpKey string, unitLines []string) {
	sys := cleanStderr(r.Stderr)
	key := frpKey
	if key == "" {
		key = keyLine(unitLines)
	}
	if key != "" && strings.Contains(what, key) {
		key = "" // already said
	}
	if what == "" {
		what = sys
		sys = ""
	}
	if what == "" && key == "" {
		what = fmt.Sprintf("systemctl %s exited with status %d", r.Operation, r.ExitCode)
	}
	reason := what
	switch {
	case key != "":
		if reason != "" {
			reason += ": "
		}
		reason += key
	case sys != "" && r.ExitCode != 0:
		// No log line to tell why: systemctl's own words are next best.
		reason += " (systemctl: " + sys + ")"
	}
	r.Reason = oneLine(reason)
	detail := []string{reason}
	if sys != "" {
		detail = append(detail, "systemctl: "+sys)
	}
	detail = append(detail, r.LogTail...)
	r.Detail = strings.Join(detail, "\n")
}

// oneLine makes s one line of at most maxReason bytes. A longer one keeps
// its start (what happened) and its end, where log lines put the error.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const maxReason, head = 320, 100
	if len(s) > maxReason {
		tail := s[len(s)-(maxReason-head-5):]
		for i := 0; i < 4 && i < len(tail) && !utf8.RuneStart(tail[0]); i++ {
			tail = tail[1:]
		}
		h := s[:head]
		for len(h) > 0 && !utf8.ValidString(h) {
			h = h[:len(h)-1]
		}
		s = h + " ... " + tail
	}
	return s
}
