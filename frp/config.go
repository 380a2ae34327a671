// Package frp reads frp configs (TOML, YAML or JSON, as frp itself does),
// asks frpc's admin API how its proxies are doing, checks that frps
// accepts connections, and tells what frp's log lines mean. It knows
// nothing about systemd.
package frp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/pelletier/go-toml/v2"
	"sigs.k8s.io/yaml"

	"github.com/moonfrp/moonfrp-bulk/safefile"
)

// Kind is what an frp unit is, from its binary and config.
type Kind string

// Kinds of frp unit.
const (
	Server  Kind = "server"  // frps
	Client  Kind = "client"  // frpc with proxies
	Visitor Kind = "visitor" // frpc with visitors only
)

// maxConfigBytes bounds a config read: frp configs are a few KB; one with
// thousands of proxies is still far below this.
const maxConfigBytes = 1 << 20

// maxNesting bounds how deeply arrays and tables may nest: frp's configs
// nest three or four levels, and the parsers recurse once per level, so a
// hostile config of nested brackets could otherwise exhaust the stack.
const maxNesting = 32

// Endpoint is an HTTP endpoint with basic-auth credentials: frpc's admin
// API or frps's dashboard. String never shows the credentials.
type Endpoint struct {
	Addr string
	Port int
	User string
	// TLS is set when the config serves the admin API over HTTPS
	// (webServer.tls.certFile and keyFile).
	TLS      bool
	password string
}

// String is host:port, for messages.
func (e Endpoint) String() string { return hostPort(e.Addr, e.Port) }

// GoString keeps %#v from printing the password too.
func (e Endpoint) GoString() string { return "frp.Endpoint{" + e.String() + "}" }

// Config is what moonfrp-bulk needs from one frp config.
type Config struct {
	Path string
	Kind Kind
	// BindAddr and BindPort are where frps accepts clients (server only).
	BindAddr string
	BindPort int
	// ServerAddr and ServerPort are the server a client logs in to.
	ServerAddr string
	ServerPort int
	// Admin is frpc's admin API, or frps's dashboard; nil when off.
	Admin *Endpoint
	// LogTo is the file frp logs to once it has read its config; empty
	// when it logs to the console (its unit's output).
	LogTo string
	// User is the config's user. frp up to 0.67 reports a proxy or
	// visitor as "USER.NAME" when it is set, 0.68 and later as "NAME";
	// see Reports.
	User string
	// Proxies and Visitors are the names of the enabled proxies and
	// visitors, as the config spells them, from the config and every file
	// it includes. frp 0.66 and later skip those with enabled = false.
	Proxies  []string
	Visitors []string
	// Includes are the files that the config's includes matched (set by
	// Load).
	Includes []string
	// Store is set when the config keeps proxies in frp's store
	// (store.path): those are not in any file, and are not checked.
	Store bool
	// DirectTCP says that frpc reaches its server over plain TCP, without
	// a proxy (transport.protocol tcp, no transport.proxyURL): its session
	// is then a TCP connection to ServerAddr:ServerPort (see ConnectedTo).
	DirectTCP bool
	// Owner is the uid that owns the config file (set by Load).
	Owner int
}

// Reports reports whether reported, a proxy or visitor name as frp
// reports it in /api/status or its log, is want, a name from the config:
// frp up to 0.67 prefixes the config's user ("u5.p5"), 0.68 and later
// does not ("p5"). Both are accepted, so that the answer itself tells
// which frp is running.
func (c Config) Reports(reported, want string) bool {
	return reported == want || (c.User != "" && reported == c.User+"."+want)
}

// Errors that make a unit fall back to systemd-level verification.
var (
	ErrLegacy   = errors.New("legacy INI config ([common]); not checked")
	ErrTemplate = errors.New("config uses templates; not checked")
)

// raw mirrors the v1 config keys that matter here, with frp's JSON names.
type raw struct {
	BindAddr   string `json:"bindAddr"`
	BindPort   *int   `json:"bindPort"`
	User       string `json:"user"`
	ServerAddr string `json:"serverAddr"`
	ServerPort *int   `json:"serverPort"`
	WebServer  struct {
		Addr     string `json:"addr"`
		Port     int    `json:"port"`
		User     string `json:"user"`
		Password string `json:"password"`
		TLS      struct {
			CertFile string `json:"certFile"`
			KeyFile  string `json:"keyFile"`
		} `json:"tls"`
	} `json:"webServer"`
	Log struct {
		To string `json:"to"`
	} `json:"log"`
	Includes  []string `json:"includes"`
	Transport struct {
		Protocol string `json:"protocol"`
		ProxyURL string `json:"proxyURL"`
	} `json:"transport"`
	Store struct {
		Path string `json:"path"`
	} `json:"store"`
	Proxies  []named `json:"proxies"`
	Visitors []named `json:"visitors"`
}

// named is a proxy or visitor. Enabled is nil when the config does not
// say, which means enabled.
type named struct {
	Name    string `json:"name"`
	Enabled *bool  `json:"enabled"`
}

// enabledNames returns the names of the entries that are not disabled.
func enabledNames(list []named) []string {
	var names []string
	for _, n := range list {
		if n.Enabled == nil || *n.Enabled {
			names = append(names, n.Name)
		}
	}
	return names
}

var legacyRE = regexp.MustCompile(`(?m)^\s*\[common\]\s*$`)

// Load reads the config at path (safely: see package safefile) for the
// given binary, "frpc" or "frps", and every file its includes match. A
// relative path (the config's, or log.to's) is frp's working directory's,
// which the unit decides: dir, when the caller knows it; otherwise such a
// path is refused, never read from the caller's own directory.
func Load(path, binary string, opt safefile.Options, dir string) (Config, error) {
	if !filepath.IsAbs(path) {
		if !filepath.IsAbs(dir) {
			return Config{}, fmt.Errorf("frp config %q is relative and the unit sets no absolute WorkingDirectory=; not read", path)
		}
		path = filepath.Join(dir, path)
	}
	data, uid, err := readConfig(path, opt)
	if err != nil {
		return Config{}, err
	}
	c, err := Parse(data, binary)
	if err != nil {
		return Config{}, err
	}
	c.Path, c.Owner = path, uid
	if c.LogTo != "" && !filepath.IsAbs(c.LogTo) {
		if filepath.IsAbs(dir) {
			c.LogTo = filepath.Join(dir, c.LogTo)
		} else {
			c.LogTo = ""
		}
	}
	if binary == "frpc" {
		if err := c.include(data, dir, opt); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// readConfig reads one config file, bounded.
func readConfig(path string, opt safefile.Options) ([]byte, int, error) {
	f, err := safefile.Open(path, opt)
	if err != nil {
		return nil, 0, fmt.Errorf("read frp config: %w", err)
	}
	defer f.Close()
	if f.Size > maxConfigBytes {
		return nil, 0, fmt.Errorf("frp config %s is larger than %d bytes; not checked", path, maxConfigBytes)
	}
	data, err := f.ReadFrom(0, maxConfigBytes)
	if err != nil {
		return nil, 0, fmt.Errorf("read frp config: %w", err)
	}
	return data, f.UID, nil
}

// maxIncludes and maxIncludeBytes bound what a config's includes may
// make the tool read.
const (
	maxIncludes     = 1000
	maxIncludeBytes = 4 << 20
)

// include adds the proxies and visitors of every file that the config's
// includes match, as frp does: a pattern's directory is taken as it is
// (relative to frp's working directory, dir; see Load), and its last
// element is matched against the regular files in that directory. The
// files are read as log.to is (see LogOptions): a config of another user
// cannot make root read root's files.
func (c *Config) include(data []byte, dir string, opt safefile.Options) error {
	var r raw
	if err := decode(data, &r); err != nil || len(r.Includes) == 0 {
		return nil // Parse has already judged the file itself
	}
	read := 0
	for _, pattern := range r.Includes {
		if !filepath.IsAbs(pattern) {
			if !filepath.IsAbs(dir) {
				return fmt.Errorf("frp config %s includes %q, relative, and the unit sets no absolute WorkingDirectory=; not read", c.Path, pattern)
			}
			pattern = filepath.Join(dir, pattern)
		}
		incDir, base := filepath.Dir(pattern), filepath.Base(pattern)
		if _, err := filepath.Match(base, ""); err != nil {
			return fmt.Errorf("frp config %s: includes pattern %q: %w", c.Path, pattern, err)
		}
		ents, err := os.ReadDir(incDir)
		if err != nil {
			return fmt.Errorf("frp config %s: includes %q: %w", c.Path, pattern, err)
		}
		for _, e := range ents {
			if ok, _ := filepath.Match(base, e.Name()); !ok || e.IsDir() {
				continue
			}
			f := filepath.Join(incDir, e.Name())
			if len(c.Includes) == maxIncludes {
				return fmt.Errorf("frp config %s includes more than %d files; not checked", c.Path, maxIncludes)
			}
			inc, _, err := readConfig(f, c.LogOptions(opt))
			if err != nil {
				return fmt.Errorf("included by %s: %w", c.Path, err)
			}
			if read += len(inc); read > maxIncludeBytes {
				return fmt.Errorf("frp config %s includes more than %d bytes; not checked", c.Path, maxIncludeBytes)
			}
			if bytes.Contains(inc, []byte("{{")) || nesting(inc) > maxNesting {
				return fmt.Errorf("frp config %s, included by %s: %w", f, c.Path, ErrTemplate)
			}
			var ir raw
			if err := decode(inc, &ir); err != nil {
				return fmt.Errorf("frp config %s, included by %s: %w", f, c.Path, err)
			}
			c.Includes = append(c.Includes, f)
			c.Proxies = append(c.Proxies, enabledNames(ir.Proxies)...)
			c.Visitors = append(c.Visitors, enabledNames(ir.Visitors)...)
		}
	}
	if len(c.Proxies) > 0 {
		c.Kind = Client
	} else if len(c.Visitors) > 0 {
		c.Kind = Visitor
	}
	return nil
}

// Parse decodes a config as frp does: TOML if it parses as TOML,
// else JSON when it starts with '{', else YAML. Parse errors never quote
// the config, which holds tokens and passwords.
func Parse(data []byte, binary string) (Config, error) {
	if legacyRE.Match(data) {
		return Config{}, ErrLegacy
	}
	if bytes.Contains(data, []byte("{{")) {
		return Config{}, ErrTemplate
	}
	if nesting(data) > maxNesting {
		return Config{}, fmt.Errorf("frp config nests deeper than %d levels; not checked", maxNesting)
	}
	var r raw
	if err := decode(data, &r); err != nil {
		return Config{}, err
	}
	c := Config{LogTo: r.Log.To}
	if c.LogTo == "console" {
		c.LogTo = ""
	}
	if r.WebServer.Port > 0 {
		addr := r.WebServer.Addr
		if addr == "" {
			addr = "127.0.0.1"
		}
		c.Admin = &Endpoint{Addr: addr, Port: r.WebServer.Port, User: r.WebServer.User, password: r.WebServer.Password,
			TLS: r.WebServer.TLS.CertFile != "" && r.WebServer.TLS.KeyFile != ""}
	}
	switch binary {
	case "frps":
		c.Kind = Server
		c.BindAddr, c.BindPort = r.BindAddr, 7000
		if r.BindPort != nil {
			c.BindPort = *r.BindPort
		}
		if c.BindPort <= 0 || c.BindPort > 65535 {
			return Config{}, fmt.Errorf("frp config: bindPort %d is not a port", c.BindPort)
		}
	case "frpc":
		c.Kind = Client
		c.ServerAddr, c.ServerPort = r.ServerAddr, 7000
		if c.ServerAddr == "" {
			c.ServerAddr = "0.0.0.0"
		}
		if r.ServerPort != nil {
			c.ServerPort = *r.ServerPort
		}
		c.User, c.Store = r.User, r.Store.Path != ""
		c.DirectTCP = (r.Transport.Protocol == "" || r.Transport.Protocol == "tcp") && r.Transport.ProxyURL == ""
		c.Proxies, c.Visitors = enabledNames(r.Proxies), enabledNames(r.Visitors)
		if len(c.Proxies) == 0 && len(c.Visitors) > 0 {
			c.Kind = Visitor
		}
	default:
		return Config{}, fmt.Errorf("frp config: unknown frp binary %q", binary)
	}
	return c, nil
}

// decode reads a config into r as frp does: TOML if it parses as TOML,
// else JSON when it starts with '{', else YAML. Its errors never quote
// the config, which holds tokens and passwords.
func decode(data []byte, r *raw) error {
	var tree map[string]any
	if terr := toml.Unmarshal(data, &tree); terr == nil {
		js, err := json.Marshal(tree)
		if err != nil {
			return fmt.Errorf("frp config: convert TOML: %w", err)
		}
		if err := json.Unmarshal(js, r); err != nil {
			return errors.New("frp config: a key has the wrong type")
		}
	} else if err := yaml.Unmarshal(data, r); err != nil {
		var de *toml.DecodeError
		if errors.As(terr, &de) && !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
			row, _ := de.Position()
			return fmt.Errorf("frp config does not parse (as TOML: line %d; nor as YAML or JSON)", row)
		}
		return errors.New("frp config does not parse as TOML, YAML or JSON")
	}
	return nil
}

// nesting returns how deeply [ and { nest in data, outside quoted strings
// (roughly: TOML's and YAML's quoting rules differ, but every parser
// recurses at least this deep).
func nesting(data []byte) int {
	depth, deepest := 0, 0
	var quote byte
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote || c == '\n' {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth = max(0, depth-1)
		}
	}
	return deepest
}

// Binary returns "frpc" or "frps" when argv runs one of them with a config
// (-c PATH, --config PATH or --config=PATH), and that config's path.
func Binary(argv []string) (binary, config string, ok bool) {
	if len(argv) == 0 {
		return "", "", false
	}
	b := filepath.Base(argv[0])
	if b != "frpc" && b != "frps" {
		return "", "", false
	}
	for i, a := range argv[1:] {
		switch {
		case (a == "-c" || a == "--config") && i+2 < len(argv):
			config = argv[i+2]
		case len(a) > len("--config=") && a[:len("--config=")] == "--config=":
			config = a[len("--config="):]
		case len(a) > 3 && a[:3] == "-c=":
			config = a[3:]
		case len(a) > 2 && a[:2] == "-c" && a[2] != '-':
			config = a[2:]
		}
	}
	return b, config, config != ""
}

func hostPort(addr string, port int) string {
	if bytes.ContainsRune([]byte(addr), ':') {
		return "[" + addr + "]:" + strconv.Itoa(port)
	}
	return addr + ":" + strconv.Itoa(port)
}
