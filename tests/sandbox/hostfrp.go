package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// HostTunnels is a MoonFRP install in a booted host: the real frp in
// /opt/frp, moonfrp-bulk and its shim, a server and clients in MoonFRP's
// config layout (/etc/frp), with the hardened units MoonFRP writes.
type HostTunnels struct {
	// Dash is the frps dashboard's port (user admin, DashPassword).
	Dash int
	// Bind is frps's bindPort.
	Bind int
	// Names are the units, the server first.
	Names []string
}

// HostTunnelOpts say what to install.
type HostTunnelOpts struct {
	// FRP is the directory of frpc and frps; Bin and Shim, when set,
	// are moonfrp-bulk and its shim (the package test installs its own).
	FRP, Bin, Shim string
	Clients        int
	WrongToken     int // the client (from 1) with a wrong token; 0: none
}

// MoonFRPUnit is a unit file exactly as MoonFRP's create_systemd_service
// writes it, hardening included.
func MoonFRPUnit(name, typ, binary, config string) string {
	return fmt.Sprintf(`[Unit]
Description=MoonFRP %s Service
After=network.target
Wants=network.target

[Service]
Type=simple
User=root
Group=root
ExecStart=/opt/frp/%s -c %s
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=5
StandardOutput=append:/var/log/frp/%s.log
StandardError=append:/var/log/frp/%s.log
SyslogIdentifier=%s
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=strict
ProtectHome=true
ReadWritePaths=/var/log/frp /etc/frp
LimitNOFILE=65536
LimitNPROC=4096

[Install]
WantedBy=multi-user.target
`, typ, binary, config, name, name, name)
}

// NewHostTunnels lays the install out in h and reloads its manager.
func NewHostTunnels(ctx context.Context, h *Host, o HostTunnelOpts) (*HostTunnels, error) {
	ports, err := FreePorts(2 + 3*o.Clients)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		src, dst string
		mode     os.FileMode
	}{
		{filepath.Join(o.FRP, "frpc"), "/opt/frp/frpc", 0o755},
		{filepath.Join(o.FRP, "frps"), "/opt/frp/frps", 0o755},
		{o.Bin, "/usr/local/bin/moonfrp-bulk", 0o755},
		{o.Shim, "/usr/share/moonfrp-bulk/moonfrp-bulk.sh", 0o644},
	} {
		if f.src == "" {
			continue
		}
		if err := h.Install(f.src, f.dst, f.mode); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(h.Root, "var/log/frp"), 0o755); err != nil {
		return nil, err
	}
	ht := &HostTunnels{Dash: ports[1], Bind: ports[0], Names: []string{"moonfrp-server"}}
	if err := h.WriteFile("/etc/frp/frps.toml", []byte(fmt.Sprintf(`bindAddr = "127.0.0.1"
bindPort = %d
proxyBindAddr = "127.0.0.1"
auth.method = "token"
auth.token = "host-token"
webServer.addr = "127.0.0.1"
webServer.port = %d
webServer.user = "admin"
webServer.password = %q
log.to = "/var/log/frp/frps.log"
`, ports[0], ports[1], DashPassword)), 0o600); err != nil {
		return nil, err
	}
	if err := h.WriteFile("/etc/systemd/system/moonfrp-server.service", []byte(MoonFRPUnit("moonfrp-server", "Server", "frps", "/etc/frp/frps.toml")), 0o644); err != nil {
		return nil, err
	}
	for i := 1; i <= o.Clients; i++ {
		token := "host-token"
		if i == o.WrongToken {
			token = "wrong-token"
		}
		admin, remote, local := ports[2+3*(i-1)], ports[3+3*(i-1)], ports[4+3*(i-1)]
		name := fmt.Sprintf("moonfrp-client-%d", i)
		cfg := fmt.Sprintf("/etc/frp/frpc-%d.toml", i)
		if err := h.WriteFile(cfg, []byte(fmt.Sprintf(`user = "h%d"
serverAddr = "127.0.0.1"
serverPort = %d
auth.method = "token"
auth.token = %q
log.to = "/var/log/frp/frpc-%d.log"
log.level = "info"
loginFailExit = false
transport.dialServerTimeout = 5
webServer.addr = "127.0.0.1"
webServer.port = %d
webServer.user = "admin"
webServer.password = "pw-%d"

[[proxies]]
name = "tcp_%d"
type = "tcp"
localIP = "127.0.0.1"
localPort = %d
remotePort = %d
`, i, ports[0], token, i, admin, i, i, local, remote)), 0o600); err != nil {
			return nil, err
		}
		if err := h.WriteFile("/etc/systemd/system/"+name+".service", []byte(MoonFRPUnit(name, "Client", "frpc", cfg)), 0o644); err != nil {
			return nil, err
		}
		ht.Names = append(ht.Names, name)
	}
	if _, err := h.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return nil, err
	}
	return ht, nil
}
