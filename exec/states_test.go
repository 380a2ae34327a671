package exec

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Reads while operations are launched: verdicts wait for company (few
// show calls), a read someone waits on goes within the prompt window and
// takes the waiting ones along, and a full batch goes at once.
func TestStatesWindows(t *testing.T) {
	const prompt, lazy = 30 * time.Millisecond, 2 * time.Second
	tests := []struct {
		name      string
		lazyReads int
		prompt    bool
		// wantSlow: the reads waited out the lazy window.
		wantSlow  bool
		wantShows int
	}{
		{"verdicts wait for company", 3, false, true, 1},
		{"a prompt read takes the waiting verdicts along", 3, true, false, 1},
		// systemctl.Show splits maxBatch names over two calls side by side.
		{"a full batch goes at once", maxBatch, false, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(nil)
				f.units = map[string]*fakeUnit{}
				for i := 0; i <= tc.lazyReads; i++ {
					f.units[fmt.Sprintf("u%d.service", i)] = &fakeUnit{}
				}
				s := newStates(context.Background(), f, prompt, lazy)
				start := time.Now()
				var wg sync.WaitGroup
				read := func(unit string, prompt bool) {
					defer wg.Done()
					if p, err := s.read(unit, prompt); err != nil || p["Id"] != unit {
						t.Errorf("read %s: %v %v", unit, p, err)
					}
				}
				for i := 0; i < tc.lazyReads; i++ {
					wg.Add(1)
					go read(fmt.Sprintf("u%d.service", i), false)
				}
				if tc.prompt {
					// After the verdicts have queued.
					synctest.Wait()
					if s.mu.Lock(); len(s.pending) != tc.lazyReads {
						t.Fatalf("%d verdicts queued, want %d", len(s.pending), tc.lazyReads)
					}
					s.mu.Unlock()
					wg.Add(1)
					go read(fmt.Sprintf("u%d.service", tc.lazyReads), true)
				}
				wg.Wait()
				took := time.Since(start)
				if slow := took >= lazy; slow != tc.wantSlow {
					t.Errorf("reads took %s (lazy window %s, prompt %s)", took, lazy, prompt)
				}
				shows := 0
				for _, c := range f.calls {
					if c[0] == "show" {
						shows++
					}
				}
				if shows != tc.wantShows {
					t.Errorf("%d show calls, want %d", shows, tc.wantShows)
				}
			})
		})
	}
}

// Once every operation is launched, verdicts that were waiting for
// company go within stateWindow, even while other units are still being
// verified (so not all of them are waiting).
func TestStatesCloseShortensTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(map[string]*fakeUnit{"u.service": {}})
		s := newStates(context.Background(), f, 30*time.Millisecond, 2*time.Second)
		s.join()
		s.join() // a second unit, still in its settle window
		done := make(chan error, 1)
		go func() {
			_, err := s.read("u.service", false)
			done <- err
		}()
		synctest.Wait() // the verdict waits for company
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		s.close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 2*stateWindow {
			t.Errorf("the waiting verdict took %s after close, want about stateWindow (%s), not the lazy window", took, stateWindow)
		}
	})
}
