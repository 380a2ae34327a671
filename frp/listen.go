package frp

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotListening means no socket listens on the port at all.
var ErrNotListening = errors.New("nothing listens on the port")

// ListenerOf reports whether process pid (or one of its threads' shared
// descriptors) holds a socket listening on TCP port. It reads
// /proc/net/tcp and tcp6 for listening sockets on the port and looks for
// their inodes among the process's descriptors. It tells an frps that
// has bound its port from another program that happens to accept on it.
// The error is ErrNotListening when nothing listens on the port, and
// another error when the process's descriptors cannot be read.
func ListenerOf(pid, port int) (bool, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(sc.Text())
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return false, ErrNotListening
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("read descriptors of pid %d: %w", pid, err)
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && inodes[target] {
			return true, nil
		}
	}
	return false, nil
}
