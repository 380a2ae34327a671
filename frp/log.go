package frp

import (
	"regexp"
	"strings"
)

var (
	// frp's line prefix: "2024-11-30 07:42:01.234 [I] [client/service.go:301] ",
	// optionally followed by xlog tags such as "[c8f3a2b1e0d94f77] ".
	prefixRE  = regexp.MustCompile(`^(\d{4}[-/]\d\d[-/]\d\d[ T][0-9:.,]+(Z|[+-]\d\d:?\d\d)?\s+)?(\[([A-Z])\]\s+)?(\[[^\]]*\.go:\d+\]\s+)?`)
	runIDRE   = regexp.MustCompile(`^\[[0-9a-f]{8,32}\]\s+`)
	startedRE = regexp.MustCompile(`^\[([^\]\s]+)\] start (?:proxy|visitor) success$`)
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
	Started  map[string]bool // proxies and visitors that started
	// LastError is the newest warning or error message.
	LastError string
}

// Add takes one more log line.
func (s *LogState) Add(raw string) {
	l := ParseLine(raw)
	switch {
	case strings.Contains(l.Message, "start frpc service"), strings.Contains(l.Message, "try to connect to server"),
		strings.Contains(l.Message, "connect to server error"):
		// A new process, or a new login after a lost session: what was
		// up before is not up now.
		s.Seen, s.LoggedIn, s.Started = true, false, nil
	case l.Level == "I" && strings.HasPrefix(l.Message, "login to server success"):
		s.Seen, s.LoggedIn = true, true
	case l.Level == "I" && startedRE.MatchString(l.Message):
		// Only frp's own info line, "[NAME] start proxy success": a
		// warning that quotes a server's words cannot pass for it.
		if s.Started == nil {
			s.Started = map[string]bool{}
		}
		s.Started[startedRE.FindStringSubmatch(l.Message)[1]] = true
	}
	if l.IsError() && l.Message != "" {
		s.LastError = l.Message
	}
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
		if !s.Started[p] {
			return "proxy " + p + " not started yet"
		}
	}
	return ""
}

// IsAPINoise reports whether a line is one of the two that frpc logs for
// every admin API request, including the tool's own looks.
func IsAPINoise(line string) bool {
	return strings.Contains(line, "Http request [/api/") || strings.Contains(line, "Http response [/api/")
}
