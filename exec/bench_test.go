package exec

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// BenchmarkForEachGroup measures the pool's own cost per item, without
// systemctl.
func BenchmarkForEachGroup(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ForEachGroup(context.Background(), context.Background(), 50, 1000, groupsOf(1), func(int, int) {})
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
