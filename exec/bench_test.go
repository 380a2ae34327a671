package exec

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// BenchmarkForEach measures the pool's own cost per item, without systemctl.
func BenchmarkForEach(b *testing.B) {
	items := make([]string, 1000)
	b.ReportAllocs()
	for b.Loop() {
		ForEach(context.Background(), nil, nil, 50, items, func(int, string) {})
	}
}

// BenchmarkParseShow measures parsing `systemctl show` for 1,000 units.
func BenchmarkParseShow(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&sb, "Id=moonfrp-client-%d.service\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=0\n"+
			"ExecStart={ path=/opt/frp/frpc ; argv[]=/opt/frp/frpc -c /etc/frp/frpc-%d.toml ; ignore_errors=no ; }\n\n", i, i)
	}
	out := []byte(sb.String())
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		if n := len(systemctl.ParseShow(out)); n != 1000 {
			b.Fatalf("%d blocks", n)
		}
	}
}
