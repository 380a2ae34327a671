package main

import (
	"errors"
	"testing"
)

func TestFDBudget(t *testing.T) {
	for _, c := range []struct {
		name  string
		limit uint64
		j     int
		want  int
		few   bool
	}{
		{"a limit far above the need keeps -j", 1 << 20, 1000, 1000, false},
		{"the Debian default keeps -j 50", 1024, 50, 50, false},
		{"the Debian default lowers -j 200", 1024, 200, (1024 - fdReserve) / fdPerSlot, false},
		{"the Debian default lowers -j 1000", 1024, 1000, (1024 - fdReserve) / fdPerSlot, false},
		{"exactly one slot fits", fdReserve + fdPerSlot, 10, 1, false},
		{"one short of one slot is refused", fdReserve + fdPerSlot - 1, 1, 0, true},
		{"a limit of 8 is refused", 8, 10, 0, true},
		{"a limit of 0 is refused", 0, 1, 0, true},
		{"no limit keeps -j", ^uint64(0), 1000, 1000, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := fdBudget(c.limit, c.j)
			var few errFewDescriptors
			if errors.As(err, &few) != c.few || (err != nil && !c.few) {
				t.Fatalf("fdBudget(%d, %d) error %v, want refused: %v", c.limit, c.j, err, c.few)
			}
			if !c.few && got != c.want {
				t.Errorf("fdBudget(%d, %d) = %d, want %d", c.limit, c.j, got, c.want)
			}
		})
	}
}
