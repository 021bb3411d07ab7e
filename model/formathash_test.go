package model

import (
	"strconv"
	"testing"
)

func TestFormatHashKeepsLeadingZeros(t *testing.T) {
	for h, want := range map[uint64]string{
		0:                  "0000000000000000",
		0xabc:              "0000000000000abc",
		0x0123456789abcdef: "0123456789abcdef",
		^uint64(0):         "ffffffffffffffff",
	} {
		got := FormatHash(h)
		if got != want {
			t.Errorf("FormatHash(%#x) = %q, want %q", h, got, want)
		}
		if back, err := strconv.ParseUint(got, 16, 64); err != nil || back != h {
			t.Errorf("FormatHash(%#x) = %q does not parse back: %v %v", h, got, back, err)
		}
	}
}
