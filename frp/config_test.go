package frp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/safefile"
)

// A client config as MoonFRP's generator writes it.
const moonfrpClient = `user = "u5"
serverAddr = "127.0.0.1"
serverPort = 17100
loginFailExit = false
auth.method = "token"
auth.token = "s3cret-token"
log.to = "/var/log/frp/frpc-5.log"
log.level = "info"
log.maxDays = 7
log.disablePrintColor = false
transport.dialServerTimeout = 5
webServer.addr = "127.0.0.1"
webServer.port = 7405
webServer.user = "admin"
webServer.password = "pw-XYZ"

[[proxies]]
name = "p5"
type = "tcp"
localIP = "127.0.0.1"
localPort = 22
remotePort = 22005

[[proxies]]
name = "web"
type = "tcp"
localPort = 80
remotePort = 22006
`

func TestParse(t *testing.T) {
	cases := []struct {
		name, binary, data string
		want               Config
		err                error
	}{
		{"moonfrp client", "frpc", moonfrpClient, Config{Kind: Client, DirectTCP: true, ServerAddr: "127.0.0.1", ServerPort: 17100,
			Admin: &Endpoint{Addr: "127.0.0.1", Port: 7405, User: "admin", password: "pw-XYZ"},
			LogTo: "/var/log/frp/frpc-5.log", User: "u5", Proxies: []string{"p5", "web"}}, nil},
		{"server defaults", "frps", "auth.token = \"x\"\n", Config{Kind: Server, BindPort: 7000}, nil},
		{"server", "frps", "bindAddr = \"0.0.0.0\"\nbindPort = 17100\n[webServer]\nport = 7500\nuser = \"a\"\npassword = \"b\"\n[log]\nto = \"/var/log/frp/frps.log\"\n",
			Config{Kind: Server, BindAddr: "0.0.0.0", BindPort: 17100, Admin: &Endpoint{Addr: "127.0.0.1", Port: 7500, User: "a", password: "b"},
				LogTo: "/var/log/frp/frps.log"}, nil},
		{"visitor", "frpc", "serverAddr = \"1.2.3.4\"\n[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"p\"\nsecretKey = \"k\"\nbindPort = 6000\n",
			Config{Kind: Visitor, DirectTCP: true, ServerAddr: "1.2.3.4", ServerPort: 7000, Visitors: []string{"v"}}, nil},
		{"console log", "frpc", "log.to = \"console\"\n[[proxies]]\nname = \"a\"\n", Config{Kind: Client, DirectTCP: true, ServerAddr: "0.0.0.0", ServerPort: 7000, Proxies: []string{"a"}}, nil},
		{"yaml", "frpc", "serverAddr: 10.0.0.1\nserverPort: 7001\nproxies:\n  - name: ssh\n    type: tcp\n",
			Config{Kind: Client, DirectTCP: true, ServerAddr: "10.0.0.1", ServerPort: 7001, Proxies: []string{"ssh"}}, nil},
		{"json", "frpc", `{"serverAddr": "10.0.0.2", "webServer": {"port": 7400}, "proxies": [{"name": "x"}]}`,
			Config{Kind: Client, DirectTCP: true, ServerAddr: "10.0.0.2", ServerPort: 7000, Admin: &Endpoint{Addr: "127.0.0.1", Port: 7400}, Proxies: []string{"x"}}, nil},
		{"legacy ini", "frpc", "[common]\nserver_addr = 1.2.3.4\n", Config{}, ErrLegacy},
		{"template", "frpc", "serverAddr = \"{{ .Envs.FRP_SERVER }}\"\n", Config{}, ErrTemplate},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.data), c.binary)
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// A broken config never quotes itself: it holds the token.
func TestParseErrorsDoNotLeakSecrets(t *testing.T) {
	for _, data := range []string{
		"auth.token = \"s3cret-token\"\nbroken = = \"s3cret-token\"\n",
		"auth.token = \"s3cret-token\"\nbindPort = \"s3cret-token\"\n",
		"- s3cret-token: [\n",
	} {
		_, err := Parse([]byte(data), "frps")
		if err == nil {
			t.Fatalf("%q parsed", data)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error quotes the secret: %v", err)
		}
	}
}

func TestEndpointStringHasNoCredentials(t *testing.T) {
	c, err := Parse([]byte(moonfrpClient), "frpc")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.Admin.String(), fmtAny(c), fmtAny(*c.Admin)} {
		if strings.Contains(s, "pw-XYZ") {
			t.Errorf("%q shows the password", s)
		}
	}
}

func TestBinary(t *testing.T) {
	cases := []struct {
		argv     []string
		bin, cfg string
		ok       bool
	}{
		{[]string{"/opt/frp/frpc", "-c", "/etc/frp/frpc-1.toml"}, "frpc", "/etc/frp/frpc-1.toml", true},
		{[]string{"/opt/frp/frps", "--config", "/etc/frp/frps.toml"}, "frps", "/etc/frp/frps.toml", true},
		{[]string{"/opt/frp/frpc", "--config=/etc/frp/a.yaml"}, "frpc", "/etc/frp/a.yaml", true},
		{[]string{"/opt/frp/frpc"}, "", "", false},
		{[]string{"/bin/sh", "-c", "frpc -c x"}, "", "", false},
		{[]string{"/opt/frp/frpc", "-c"}, "", "", false},
	}
	for _, c := range cases {
		bin, cfg, ok := Binary(c.argv)
		if ok != c.ok || (ok && (bin != c.bin || cfg != c.cfg)) {
			t.Errorf("Binary(%q) = %q %q %v", c.argv, bin, cfg, ok)
		}
	}
}

func TestLoadRefusesSymlinksAndFIFOs(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "frpc.toml")
	if err := os.WriteFile(real, []byte(moonfrpClient), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.toml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link, "frpc", safefile.Options{}, ""); !errors.Is(err, safefile.ErrRefused) {
		t.Errorf("symlink: %v", err)
	}
	if _, err := Load(real, "frpc", safefile.Options{}, ""); err != nil {
		t.Errorf("regular file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(moonfrpClient), true)
	f.Add([]byte("bindPort = 7000\n"), false)
	f.Add([]byte("proxies:\n - name: a\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, client bool) {
		bin := "frps"
		if client {
			bin = "frpc"
		}
		c, err := Parse(data, bin)
		if err != nil {
			return
		}
		if c.Kind == Server && (c.BindPort <= 0 || c.BindPort > 65535) {
			t.Fatalf("bad port %d accepted", c.BindPort)
		}
	})
}

func fmtAny(v any) string { return fmt.Sprintf("%v %+v", v, v) }

// A config of nested brackets is refused before any parser recurses
// into it, and a TOML syntax error says its line.
func TestParseRefusesDeepNestingAndNamesTheLine(t *testing.T) {
	deep := "a = " + strings.Repeat("[", 1<<20)
	if _, err := Parse([]byte(deep), "frpc"); err == nil || !strings.Contains(err.Error(), "nests deeper") {
		t.Errorf("deep nesting: %v", err)
	}
	ok := "a = [[1], [2]]\nb = \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"\n[[proxies]]\nname = \"x\"\n"
	if _, err := Parse([]byte(ok), "frpc"); err != nil {
		t.Errorf("brackets in a string count as nesting: %v", err)
	}
	if _, err := Parse([]byte("serverPort = 7000\n[[proxies]\nname = \"x\"\n"), "frpc"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("TOML syntax error: %v, want its line", err)
	}
}

func TestGoStringHidesThePassword(t *testing.T) {
	c, _ := Parse([]byte(moonfrpClient), "frpc")
	if s := fmt.Sprintf("%#v", *c.Admin); strings.Contains(s, "pw-XYZ") {
		t.Errorf("%%#v shows the password: %s", s)
	}
}
