package frp

import "testing"

// Lines as frp 0.61 writes them to log.to.
const (
	lineLogin     = "2026-11-30 07:39:34.119 [I] [client/service.go:287] [1fc407bd5b886452] login to server success, get run id [1fc407bd5b886452]"
	lineProxy     = "2026-11-30 07:39:34.125 [I] [client/control.go:168] [1fc407bd5b886452] [u5.p5] start proxy success"
	lineToken     = "2026-11-30 07:39:34.119 [W] [client/service.go:298] connect to server error: token in login doesn't match token from configuration"
	lineRefused   = "2026-11-30 07:39:34.119 [W] [client/service.go:298] connect to server error: dial tcp 127.0.0.1:17100: connect: connection refused"
	linePortUsed  = "2026-11-30 07:39:34.119 [W] [client/control.go:166] [9383251851041bb9] [u5.p5] start error: port already used"
	lineVisitor   = "2026-11-30 07:39:34.130 [I] [visitor/visitor_manager.go:121] [1fc407bd5b886452] start visitor success"
	lineTryServer = "2026-11-30 07:39:34.100 [I] [client/service.go:295] try to connect to server..."
)

func TestParseLine(t *testing.T) {
	cases := []struct {
		in    string
		level string
		msg   string
	}{
		{lineToken, "W", "connect to server error: token in login doesn't match token from configuration"},
		{linePortUsed, "W", "[u5.p5] start error: port already used"},
		{lineLogin, "I", "login to server success, get run id [1fc407bd5b886452]"},
		{"no prefix at all", "", "no prefix at all"},
	}
	for _, c := range cases {
		if got := ParseLine(c.in); got.Level != c.level || got.Message != c.msg {
			t.Errorf("ParseLine(%q) = %+v, want %s %q", c.in, got, c.level, c.msg)
		}
	}
}

func TestLogStateUp(t *testing.T) {
	client := Config{Kind: Client, Proxies: []string{"u5.p5"}}
	visitor := Config{Kind: Visitor, Visitors: []string{"v"}}
	cases := []struct {
		name    string
		cfg     Config
		lines   []string
		up      bool
		lastErr string
	}{
		{"logged in and proxy started", client, []string{lineTryServer, lineLogin, lineProxy}, true, ""},
		{"logged in, proxy refused", client, []string{lineLogin, linePortUsed}, false, "[u5.p5] start error: port already used"},
		{"wrong token", client, []string{lineTryServer, lineToken}, false, "connect to server error: token in login doesn't match token from configuration"},
		{"refused, then up", client, []string{lineRefused, lineLogin, lineProxy}, true, "connect to server error: dial tcp 127.0.0.1:17100: connect: connection refused"},
		{"visitor logged in", visitor, []string{lineLogin, lineVisitor}, true, ""},
		{"nothing yet", client, nil, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s LogState
			for _, l := range c.lines {
				s.Add(l)
			}
			if up := s.Up(c.cfg) == ""; up != c.up {
				t.Errorf("up = %v (%q), want %v", up, s.Up(c.cfg), c.up)
			}
			if s.LastError != c.lastErr {
				t.Errorf("last error %q, want %q", s.LastError, c.lastErr)
			}
		})
	}
}
