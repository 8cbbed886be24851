package activity

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local)
	cases := []struct {
		in   string
		end  bool
		want time.Time
	}{
		{"", false, time.Time{}},
		{"2026-12-01T10:00:00Z", false, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)},
		{"2026-12-01 10:30", false, day.Add(10*time.Hour + 30*time.Minute)},
		{"2026-12-01", false, day},
		{"2026-12-01", true, day.Add(24*time.Hour - time.Nanosecond)},
		{"36h", false, now.Add(-36 * time.Hour)},
		{"7d", true, now.Add(-7 * 24 * time.Hour)},
	}
	for _, c := range cases {
		got, err := ParseTime(c.in, c.end, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseTime(%q, %v) = %v, %v; want %v", c.in, c.end, got, err, c.want)
		}
	}
	for _, bad := range []string{"yesterday", "2026-13-01", "-5h", "0d", "12"} {
		if _, err := ParseTime(bad, false, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}
