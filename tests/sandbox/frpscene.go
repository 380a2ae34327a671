package sandbox

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FRPScene is a MoonFRP-shaped set of real frp tunnels in a sandbox: one
// frps with its dashboard on, and clients whose configs are written the
// way MoonFRP's generator writes them (loginFailExit = false, log.to, an
// admin API on 127.0.0.1). Tests, the demo and the benchmark use it.
type FRPScene struct {
	sb *Sandbox
	// FRP is the directory holding the real frpc and frps; Version is
	// their frp release.
	FRP     string
	Version string
	CfgDir  string
	// Bind is frps's bindPort; Dash its dashboard's port.
	Bind, Dash int
	Specs      []Spec
	// Proxies maps each tcp client unit to its proxy's name on frps.
	Proxies map[string]string
	// RemotePorts maps each tcp client unit to its proxy's remotePort.
	RemotePorts map[string]int
	// AdminPorts maps each client unit with an admin API to its port.
	AdminPorts map[string]int
	ports      []int
}

// DashPassword is the dashboard's password in every scene.
const DashPassword = "dash-secret"

// NewFRPScene builds (once) or finds the real frp of version (FRPDefault
// when empty) and reserves ports for up to clients clients: all at once,
// since ports asked for one by one may come back twice.
func NewFRPScene(ctx context.Context, sb *Sandbox, clients int, version string) (*FRPScene, error) {
	if version == "" {
		version = FRPDefault
	}
	dir, err := FRPOf(ctx, version)
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(4 + 3*clients)
	if err != nil {
		return nil, err
	}
	s := &FRPScene{sb: sb, FRP: dir, Version: version, CfgDir: filepath.Join(sb.StateDir, "frp"), Bind: ports[0], Dash: ports[1],
		ports: ports[2:], Proxies: map[string]string{}, RemotePorts: map[string]int{}, AdminPorts: map[string]int{}}
	if err := os.MkdirAll(s.CfgDir, 0o755); err != nil {
		return nil, err
	}
	return s, nil
}

// Port hands out a reserved port that no other part of the scene uses.
func (s *FRPScene) Port() (int, error) {
	if len(s.ports) == 0 {
		return 0, errors.New("frp scene: out of reserved ports")
	}
	p := s.ports[0]
	s.ports = s.ports[1:]
	return p, nil
}

func (s *FRPScene) ports3() ([3]int, error) {
	var p [3]int
	for i := range p {
		var err error
		if p[i], err = s.Port(); err != nil {
			return p, err
		}
	}
	return p, nil
}

func (s *FRPScene) write(name, body string) (string, error) {
	p := filepath.Join(s.CfgDir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		return "", err
	}
	return p, os.Chown(p, s.sb.UID, s.sb.GID)
}

// Server adds moonfrp-server; binary, when set, replaces frps (a wrapper).
func (s *FRPScene) Server(binary string) error {
	if binary == "" {
		binary = filepath.Join(s.FRP, "frps")
	}
	cfg, err := s.write("frps.toml", fmt.Sprintf(`bindAddr = "127.0.0.1"
bindPort = %d
proxyBindAddr = "127.0.0.1"
auth.method = "token"
auth.token = "good-token"
webServer.addr = "127.0.0.1"
webServer.port = %d
webServer.user = "admin"
webServer.password = %q
log.to = "%s"
log.level = "info"
`, s.Bind, s.Dash, DashPassword, filepath.Join(s.sb.LogDir, "frps.log")))
	if err != nil {
		return err
	}
	s.Specs = append(s.Specs, Spec{Name: "moonfrp-server", ExecStart: binary + " -c " + cfg})
	return nil
}

// ClientOpts vary one client from the healthy default.
type ClientOpts struct {
	Token      string // default good-token
	ServerPort int    // default the scene's bind port
	RemotePort int    // default a reserved port
	NoAdmin    bool   // no webServer: proven from the log
	STCP       string // an stcp proxy with this secret instead of tcp
	// AdminAddr is webServer.addr (default 127.0.0.1).
	AdminAddr string
	// LocalPort is the proxy's localPort (default a reserved port).
	LocalPort int
	// IncludePort, when set, adds a second proxy, "i<id>", with this
	// remotePort, in a file that the config includes by a glob.
	IncludePort int
	// Disabled adds a proxy "d<id>" with enabled = false (frp 0.66+).
	Disabled bool
	// TLS serves the admin API over HTTPS with a self-signed certificate.
	TLS bool
	// Relative runs frpc -c with the config's bare file name, and sets
	// WorkingDirectory= to the config directory.
	Relative bool
}

// Client adds moonfrp-client-<id> with config frpc-<id>.toml and one proxy.
func (s *FRPScene) Client(id string, o ClientOpts) error {
	p, err := s.ports3()
	if err != nil {
		return err
	}
	if o.Token == "" {
		o.Token = "good-token"
	}
	if o.ServerPort == 0 {
		o.ServerPort = s.Bind
	}
	if o.RemotePort == 0 {
		o.RemotePort = p[1]
	}
	if o.LocalPort != 0 {
		p[2] = o.LocalPort
	}
	user := "u" + id
	var b strings.Builder
	fmt.Fprintf(&b, "user = %q\nserverAddr = \"127.0.0.1\"\nserverPort = %d\nloginFailExit = false\n", user, o.ServerPort)
	fmt.Fprintf(&b, "auth.method = \"token\"\nauth.token = %q\n", o.Token)
	fmt.Fprintf(&b, "log.to = %q\nlog.level = \"info\"\nlog.maxDays = 7\nlog.disablePrintColor = false\n", filepath.Join(s.sb.LogDir, "frpc-"+id+".log"))
	b.WriteString("transport.dialServerTimeout = 5\n")
	if !o.NoAdmin {
		if o.AdminAddr == "" {
			o.AdminAddr = "127.0.0.1"
		}
		fmt.Fprintf(&b, "webServer.addr = %q\nwebServer.port = %d\nwebServer.user = \"admin\"\nwebServer.password = \"pw-%s\"\n", o.AdminAddr, p[0], id)
		s.AdminPorts["moonfrp-client-"+id] = p[0]
	}
	if o.TLS {
		cert, key, err := s.certificate()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "webServer.tls.certFile = %q\nwebServer.tls.keyFile = %q\n", cert, key)
	}
	if o.IncludePort != 0 {
		dir := filepath.Join(s.CfgDir, "inc-"+id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if _, err := s.write(filepath.Join("inc-"+id, "extra.toml"), fmt.Sprintf("[[proxies]]\nname = \"i%s\"\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = %d\nremotePort = %d\n", id, p[2], o.IncludePort)); err != nil {
			return err
		}
		fmt.Fprintf(&b, "includes = [%q]\n", filepath.Join(dir, "*.toml"))
	}
	if o.Disabled {
		fmt.Fprintf(&b, "\n[[proxies]]\nname = \"d%s\"\ntype = \"tcp\"\nenabled = false\nlocalIP = \"127.0.0.1\"\nlocalPort = %d\nremotePort = %d\n", id, p[2], s.Bind)
	}
	name := "p" + id
	if o.STCP != "" {
		fmt.Fprintf(&b, "\n[[proxies]]\nname = %q\ntype = \"stcp\"\nsecretKey = %q\nlocalIP = \"127.0.0.1\"\nlocalPort = %d\n", name, o.STCP, p[2])
	} else {
		fmt.Fprintf(&b, "\n[[proxies]]\nname = %q\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = %d\nremotePort = %d\n", name, p[2], o.RemotePort)
		s.Proxies["moonfrp-client-"+id] = user + "." + name
		s.RemotePorts["moonfrp-client-"+id] = o.RemotePort
	}
	cfg, err := s.write("frpc-"+id+".toml", b.String())
	if err != nil {
		return err
	}
	spec := Spec{Name: "moonfrp-client-" + id, ExecStart: filepath.Join(s.FRP, "frpc") + " -c " + cfg}
	if o.Relative {
		spec.ExecStart, spec.WorkDir = filepath.Join(s.FRP, "frpc")+" -c "+filepath.Base(cfg), s.CfgDir
	}
	s.Specs = append(s.Specs, spec)
	return nil
}

// certificate writes (once) a self-signed certificate for 127.0.0.1 and
// its key, readable by the sandbox user, and returns their paths.
func (s *FRPScene) certificate() (cert, key string, err error) {
	cert, key = filepath.Join(s.CfgDir, "admin.crt"), filepath.Join(s.CfgDir, "admin.key")
	if _, err := os.Stat(cert); err == nil {
		return cert, key, nil
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "frpc admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return "", "", err
	}
	if _, err := s.write("admin.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))); err != nil {
		return "", "", err
	}
	if _, err := s.write("admin.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))); err != nil {
		return "", "", err
	}
	return cert, key, nil
}

// Visitor adds moonfrp-visitor-<id>, visiting client ownerID's stcp
// proxy; with admin it also has a webServer (whose /api/status lists no
// visitors).
func (s *FRPScene) Visitor(id, ownerID, secret string, admin bool) error {
	p, err := s.ports3()
	if err != nil {
		return err
	}
	port := p[0]
	web := ""
	if admin {
		web = fmt.Sprintf("webServer.addr = \"127.0.0.1\"\nwebServer.port = %d\nwebServer.user = \"admin\"\nwebServer.password = \"vpw\"\n", p[1])
	}
	cfg, err := s.write("visitor-"+id+".toml", web+fmt.Sprintf(`user = "visitor%s"
serverAddr = "127.0.0.1"
serverPort = %d
auth.method = "token"
auth.token = "good-token"
log.to = %q
loginFailExit = false

[[visitors]]
name = "v%s"
type = "stcp"
serverUser = "u%s"
serverName = "p%s"
secretKey = %q
bindAddr = "127.0.0.1"
bindPort = %d
`, id, s.Bind, filepath.Join(s.sb.LogDir, "visitor-"+id+".log"), id, ownerID, ownerID, secret, port))
	if err != nil {
		return err
	}
	s.Specs = append(s.Specs, Spec{Name: "moonfrp-visitor-" + id, ExecStart: filepath.Join(s.FRP, "frpc") + " -c " + cfg})
	return nil
}

// LateFRPS writes a wrapper named frps that waits before it runs the real
// one, so that the server accepts only late; it is still an frp unit.
func (s *FRPScene) LateFRPS(delay time.Duration) (string, error) {
	dir := filepath.Join(s.sb.RuntimeDir, "late")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "frps")
	body := fmt.Sprintf("#!/bin/sh\nsleep %.3f\nexec %s \"$@\"\n", delay.Seconds(), filepath.Join(s.FRP, "frps"))
	return p, os.WriteFile(p, []byte(body), 0o755)
}

// ConfigPath is the config file of client or visitor unit.
func (s *FRPScene) ConfigPath(unit string) string {
	id := strings.TrimPrefix(strings.TrimPrefix(unit, "moonfrp-client-"), "moonfrp-visitor-")
	if strings.HasPrefix(unit, "moonfrp-visitor-") {
		return filepath.Join(s.CfgDir, "visitor-"+id+".toml")
	}
	return filepath.Join(s.CfgDir, "frpc-"+id+".toml")
}

// Install writes the units and reloads the manager.
func (s *FRPScene) Install(ctx context.Context) error { return s.sb.Install(ctx, s.Specs...) }

// Online asks frps's dashboard which tcp proxies are online right now.
func (s *FRPScene) Online(ctx context.Context) (map[string]bool, error) {
	return DashboardOnline(ctx, s.Dash)
}

// DashboardOnline asks the dashboard at 127.0.0.1:port (user admin,
// DashPassword) which tcp proxies are online.
func DashboardOnline(ctx context.Context, port int) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/api/proxy/tcp", port), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("admin", DashPassword)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("frps dashboard: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Proxies []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"proxies"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("frps dashboard: %w", err)
	}
	on := map[string]bool{}
	for _, p := range body.Proxies {
		if p.Status == "online" {
			on[p.Name] = true
		}
	}
	return on, nil
}
