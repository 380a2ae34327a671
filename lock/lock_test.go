package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestOverlappingSetsWaitDisjointDoNot(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	held, err := Acquire(ctx, dir, []string{"b.service", "a.service"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open file descriptions, so a second Acquire in
	// this process contends just as another process would.
	other, err := Acquire(ctx, dir, []string{"c.service"}, Options{NoWait: true})
	if err != nil {
		t.Fatalf("disjoint units blocked: %v", err)
	}
	other.Release()

	_, err = Acquire(ctx, dir, []string{"c.service", "b.service"}, Options{NoWait: true})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("overlap with NoWait: %v, want ErrBusy", err)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("busy error %q does not name the holder (%s)", err, want)
	}

	waited := make(chan int, 1)
	got := make(chan error, 1)
	go func() {
		s, err := Acquire(ctx, dir, []string{"b.service"}, Options{OnWait: func(pid int) { waited <- pid }})
		if err == nil {
			s.Release()
		}
		got <- err
	}()
	if pid := <-waited; pid != os.Getpid() {
		t.Errorf("OnWait got pid %d, want %d", pid, os.Getpid())
	}
	select {
	case err := <-got:
		t.Fatalf("acquired while held: %v", err)
	default:
	}
	held.Release()
	if err := <-got; err != nil {
		t.Errorf("after release: %v", err)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	dir := t.TempDir()
	held, err := Acquire(context.Background(), dir, []string{"a.service"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, dir, []string{"a.service"}, Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's error", err)
	}
}
