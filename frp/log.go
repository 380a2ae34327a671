package frp

import (
	"regexp"
	"strings"
	"time"
)

var (
	// frp's line prefix: "2024-11-30 07:42:01.234 [I] [client/service.go:301] ",
	// optionally followed by xlog tags such as "[c8f3a2b1e0d94f77] ".
	prefixRE  = regexp.MustCompile(`^(\d{4}[-/]\d\d[-/]\d\d[ T][0-9:.,]+(Z|[+-]\d\d:?\d\d)?\s+)?(\[([A-Z])\]\s+)?(\[[^\]]*\.go:\d+\]\s+)?`)
	runIDRE   = regexp.MustCompile(`^\[[0-9a-f]{8,32}\]\s+`)
	startedRE = regexp.MustCompile(`^\[([^\]\s]+)\] start (?:proxy|visitor) success$`)
	// "[NAME] start error: WHY": the server refused a proxy.
	startErrRE = regexp.MustCompile(`^\[([^\]\s]+)\] start error: (.+)$`)
)

// Line is one frp log line taken apart.
type Line struct {
	Level string // I, W, E, D, T; "" when the line has no level
	// Message is what frp wrote after its prefix, word for word.
	Message string
}

// ParseLine splits a log line (already sanitised) into level and message.
func ParseLine(s string) Line {
	m := prefixRE.FindStringSubmatch(s)
	msg := strings.TrimSpace(s[len(m[0]):])
	msg = runIDRE.ReplaceAllString(msg, "")
	return Line{Level: m[4], Message: msg}
}

// IsError reports whether the line is a warning or an error.
func (l Line) IsError() bool { return l.Level == "W" || l.Level == "E" }

// LogState is what frp's log says about a tunnel, line by line since an
// operation began.
type LogState struct {
	// Seen is set once a line about the session was read (a start, a
	// login attempt, a login): without one, the log says nothing either
	// way, for example just after frp rotated it.
	Seen     bool
	LoggedIn bool
	// Started holds the proxies and visitors that started, by the name
	// frp reported (see Config.Reports).
	Started map[string]bool
	// Rejected is the server's refusal of the latest login, in frp's
	// words ("" when none): a config that frpc's retries cannot cure.
	Rejected string
	// Refused holds, by reported name, the server's refusal of a proxy
	// since it last started; frpc tries such a proxy again only after
	// ProxyRetry.
	Refused map[string]string
	// LastError is the newest warning or error message.
	LastError string
	// Logins counts the logins seen ("login to server success").
	Logins int
}

// ProxyRetry is how long frpc waits before it asks its server again for
// a proxy that the server refused (frp's startErrTimeout, 30 s in every
// version since 0.52; measured 30-33 s).
const ProxyRetry = 30 * time.Second

// Add takes one more log line.
func (s *LogState) Add(raw string) {
	if IsAPINoise(raw) {
		// Written for every admin API request, the tool's own looks
		// included: never a reason.
		return
	}
	l := ParseLine(raw)
	switch {
	case strings.HasPrefix(l.Message, loginError):
		// A new login attempt failed: what was up before is not up now.
		s.Seen, s.LoggedIn, s.Started, s.Refused = true, false, nil, nil
		s.Rejected = ""
		if msg := strings.TrimPrefix(l.Message, loginError); rejectedLogin(msg) {
			s.Rejected = l.Message
		}
	case strings.Contains(l.Message, "start frpc service"):
		// A new process: nothing the one before it logged holds for it,
		// not even a refusal (its config may have been fixed since).
		*s = LogState{Seen: true}
		return
	case strings.Contains(l.Message, "try to connect to server"):
		// A new login after a lost session, or a retry.
		s.Seen, s.LoggedIn, s.Started, s.Refused = true, false, nil, nil
	case l.Level == "I" && strings.HasPrefix(l.Message, "login to server success"):
		s.Seen, s.LoggedIn, s.Rejected = true, true, ""
		s.Logins++
	case l.Level == "I" && startedRE.MatchString(l.Message):
		// Only frp's own info line, "[NAME] start proxy success": a
		// warning that quotes a server's words cannot pass for it.
		name := startedRE.FindStringSubmatch(l.Message)[1]
		if s.Started == nil {
			s.Started = map[string]bool{}
		}
		s.Started[name] = true
		delete(s.Refused, name)
	case l.Level == "W" && startErrRE.MatchString(l.Message):
		m := startErrRE.FindStringSubmatch(l.Message)
		if s.Refused == nil {
			s.Refused = map[string]string{}
		}
		s.Refused[m[1]] = m[2]
	}
	if l.IsError() && l.Message != "" {
		s.LastError = l.Message
	}
}

// loginError starts frpc's warning for a failed login, in every version:
// "connect to server error: <why>". frp up to 0.68 also logs the server's
// words alone at level E just before it.
const loginError = "connect to server error: "

// rejectedLogin reports whether a failed login's reason is the server's
// refusal (its token, its plugin, its OIDC check), which trying again
// cannot cure, rather than a network failure, which can.
func rejectedLogin(why string) bool {
	for _, s := range []string{"token in login doesn't match", "authorization failed", "reject login"} {
		if strings.Contains(why, s) {
			return true
		}
	}
	return false
}

// Up says whether the log shows the tunnel of c up: logged in, and every
// proxy started. A visitor-only config is up once logged in. It returns ""
// when up, else what is missing.
func (s LogState) Up(c Config) string {
	if !s.LoggedIn {
		return "not logged in to its server yet"
	}
	if c.Kind == Visitor {
		return ""
	}
	for _, p := range c.Proxies {
		if !s.started(c, p) {
			return "proxy " + p + " not started yet"
		}
	}
	return ""
}

func (s LogState) started(c Config, p string) bool {
	for name := range s.Started {
		if c.Reports(name, p) {
			return true
		}
	}
	return false
}

// refused returns the server's refusal of proxy p of c since it last
// started, "" when none.
func (s LogState) refused(c Config, p string) string {
	for name, why := range s.Refused {
		if c.Reports(name, p) {
			return why
		}
	}
	return ""
}

// IsAPINoise reports whether a line is one that frpc logs for an admin
// API request, the tool's own looks included: "Http request [/api/...]"
// and "Http response [/api/...]" up to 0.66, "http request: [/api/...]",
// "http response [/api/...]" and, for a failed request, "http response
// [/api/...]: error: ..." from 0.67.
func IsAPINoise(line string) bool {
	l := strings.ToLower(line)
	return strings.Contains(l, "http request [/api/") || strings.Contains(l, "http request: [/api/") ||
		strings.Contains(l, "http response [/api/") || strings.Contains(l, "http response: [/api/")
}
